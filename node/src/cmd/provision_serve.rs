//! `meshota provision serve` (the station's image server), `provision
//! fetch` (the device: fetch its current image, apply it; with `--watch`,
//! again on every MQTT re-provision message) and `provision notify` (the
//! station: publish that message). The request signing and checks live
//! in `meshota_provision::fetch_auth`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use meshota_manifest::fs::read_limited;
use meshota_provision::ca::REGISTRY_FILE;
use meshota_provision::fetch_auth::{FetchAuth, IMAGE_PATH_PREFIX, ReplayGuard, verify_fetch};
use meshota_provision::image::contents::ImmutableField;
use meshota_provision::image::signed::MAX_SIGNED_IMAGE_BYTES;
use meshota_provision::registry::Registry;
use meshota_provision::serial::check_name;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::provision::rejected;
use super::provision_image::apply_bytes;
use crate::config::NodeConfig;
use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::load_secret;
use crate::timefmt::now;

/// Arguments of `provision serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The intermediate CA directory holding the registry.
    #[arg(long)]
    registry: PathBuf,
    /// Directory of the devices' current images, `<device id>.sqfs`
    /// (written by `provision image --out`).
    #[arg(long)]
    images: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: SocketAddr,
}

/// Arguments of `provision fetch`.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The image server, e.g. http://station:7080.
    #[arg(long)]
    server: String,
    /// The node config (`[provision] keys`, trust root, data directory).
    #[arg(long)]
    config: PathBuf,
    /// After the first fetch, stay subscribed to
    /// meshota/<fleet>/<device>/reprovision and fetch again on each message.
    #[arg(long, requires = "mqtt")]
    watch: bool,
    /// The MQTT broker, HOST:PORT (plain TCP).
    #[arg(long)]
    mqtt: Option<String>,
}

/// Arguments of `provision notify`.
#[derive(Debug, Args)]
pub(crate) struct NotifyArgs {
    /// The MQTT broker, HOST:PORT (plain TCP).
    #[arg(long)]
    mqtt: String,
    /// The fleet.
    #[arg(long)]
    fleet: String,
    /// The device id.
    #[arg(long)]
    device: String,
}

/// The re-provision topic of a device.
fn topic(fleet: &str, device: &str) -> String {
    format!("meshota/{fleet}/{device}/reprovision")
}

struct ServeState {
    registry: PathBuf,
    images: PathBuf,
    /// Also serialises registry opens: redb allows one open per file.
    guard: Mutex<ReplayGuard>,
}

/// Opens the registry for one request. The station's own commands (sign,
/// revoke, image) open the same file, and redb allows one holder at a
/// time, so the server holds it only while it answers, retrying for up to
/// 3 s while a station command has it.
fn open_registry(path: &std::path::Path) -> meshota_provision::Result<Registry> {
    let start = std::time::Instant::now();
    loop {
        match Registry::open(path) {
            Ok(r) => return Ok(r),
            Err(e) if start.elapsed() > Duration::from_secs(3) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn refuse(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (status, format!("{why}\n")).into_response()
}

fn serve_image(state: &ServeState, device_id: &str, headers: &HeaderMap) -> Response {
    let auth = match FetchAuth::from_headers(|n| headers.get(n).and_then(|v| v.to_str().ok())) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e),
    };
    if auth.device_id != device_id || check_name("device id", device_id).is_err() {
        return refuse(StatusCode::FORBIDDEN, "a device fetches only its own image");
    }
    let path = format!("{IMAGE_PATH_PREFIX}{device_id}");
    let checked = match state.guard.lock() {
        Ok(mut g) => open_registry(&state.registry)
            .and_then(|r| verify_fetch(&r, &auth, "GET", &path, now(), &mut g)),
        Err(_) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "replay guard poisoned"),
    };
    match checked {
        Ok(_) => {}
        Err(e @ meshota_provision::Error::DeviceRevoked(_)) => {
            return refuse(StatusCode::FORBIDDEN, e);
        }
        Err(e @ meshota_provision::Error::Registry { .. }) => {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e),
    }
    let file = state.images.join(format!("{device_id}.sqfs"));
    match read_limited(&file, MAX_SIGNED_IMAGE_BYTES) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(_) => refuse(StatusCode::NOT_FOUND, format!("no image for {device_id}")),
    }
}

pub(crate) fn serve(a: &ServeArgs) -> CmdResult {
    let reg_path = a.registry.join(REGISTRY_FILE);
    if !reg_path.exists() {
        return Err(Failure::file(&reg_path, "no registry here"));
    }
    // Fail now, not at the first request, if the registry cannot be read.
    drop(Registry::open(&reg_path).map_err(rejected)?);
    let state = Arc::new(ServeState {
        registry: reg_path,
        images: a.images.clone(),
        guard: Mutex::new(ReplayGuard::default()),
    });
    let app = Router::new()
        .route(
            "/v1/provision/image/{device_id}",
            get(
                |State(s): State<Arc<ServeState>>,
                 UrlPath(device_id): UrlPath<String>,
                 headers: HeaderMap| async move {
                    tokio::task::spawn_blocking(move || serve_image(&s, &device_id, &headers))
                        .await
                        .unwrap_or_else(|_| {
                            refuse(StatusCode::INTERNAL_SERVER_ERROR, "handler failed")
                        })
                },
            ),
        )
        .with_state(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::rejected(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| Failure::rejected(format!("listen on {}: {e}", a.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::rejected(format!("listen: {e}")))?;
        println!("serving provisioning images on http://{addr}");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Failure::rejected(format!("server: {e}")))
    })
}

fn random16() -> CmdResult<[u8; 16]> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n)
        .map_err(|e| Failure::rejected(format!("the system RNG failed: {e}")))?;
    Ok(n)
}

/// One signed fetch and apply.
fn fetch_once(a: &FetchArgs, config: &NodeConfig) -> CmdResult<String> {
    let keys = config
        .provision
        .as_ref()
        .ok_or_else(|| Failure::file(&a.config, "has no [provision] table: set `keys`"))?;
    let key = load_secret(&keys.keys.join("identity.key"))?;
    let device_id = key.name().to_owned();
    let path = format!("{IMAGE_PATH_PREFIX}{device_id}");
    let auth =
        FetchAuth::sign(&key, "GET", &path, &device_id, now(), random16()?).map_err(rejected)?;
    let url = format!("{}{path}", a.server.trim_end_matches('/'));
    let mut req = ureq::get(&url);
    for (k, v) in auth.headers() {
        req = req.header(k, v);
    }
    let mut resp = req
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .call()
        .map_err(|e| Failure::rejected(format!("{url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_SIGNED_IMAGE_BYTES as u64)
        .read_to_vec()
        .map_err(|e| Failure::rejected(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(Failure::rejected(format!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    apply_bytes(&a.config, config, &body, &url)?;
    Ok(device_id)
}

/// The fleet and MQTT client id the installed image names.
fn installed_identity(config: &NodeConfig) -> CmdResult<(String, String)> {
    let inst = meshota_provision::apply::installed(&config.data_dir)
        .at(&config.data_dir)?
        .ok_or_else(|| Failure::rejected("nothing installed to read the fleet from"))?;
    let field =
        |f| {
            inst.tree.field(f).ok().flatten().ok_or_else(|| {
                Failure::rejected(format!("the installed image has no /{}", f.path()))
            })
        };
    Ok((
        field(ImmutableField::MqttGroupId)?,
        field(ImmutableField::MqttClientId)?,
    ))
}

fn broker(s: &str) -> CmdResult<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| Failure::usage(format!("--mqtt {s:?}: use HOST:PORT")))?;
    let port = port
        .parse()
        .map_err(|_| Failure::usage(format!("--mqtt {s:?}: bad port")))?;
    Ok((host.to_owned(), port))
}

pub(crate) fn fetch(a: &FetchArgs) -> CmdResult {
    let config = NodeConfig::load(&a.config)?;
    let device_id = fetch_once(a, &config)?;
    if !a.watch {
        return Ok(());
    }
    let Some(mqtt) = &a.mqtt else {
        return Err(Failure::usage("--watch needs --mqtt HOST:PORT"));
    };
    let (host, port) = broker(mqtt)?;
    let (fleet, client_id) = installed_identity(&config)?;
    let topic = topic(&fleet, &device_id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::rejected(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(opts, 16);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // (Re)subscribe on every connection.
                    client
                        .subscribe(topic.clone(), QoS::AtLeastOnce)
                        .await
                        .map_err(|e| Failure::rejected(format!("MQTT subscribe: {e}")))?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    println!("watching {topic}");
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                    println!("re-provision requested on {topic}");
                    // Blocking on this current-thread runtime: the MQTT
                    // connection waits while the image is fetched and applied.
                    if let Err(e) = fetch_once(a, &config) {
                        eprintln!("meshota: re-provisioning failed: {}", e.message);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("meshota: MQTT {mqtt}: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

pub(crate) fn notify(a: &NotifyArgs) -> CmdResult {
    check_name("fleet", &a.fleet).map_err(Failure::usage)?;
    check_name("device id", &a.device).map_err(Failure::usage)?;
    let (host, port) = broker(&a.mqtt)?;
    let topic = topic(&a.fleet, &a.device);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::rejected(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let id = format!("meshota-notify-{}", hex::encode(random16()?));
        let (client, mut events) = AsyncClient::new(MqttOptions::new(id, host, port), 4);
        client
            .publish(
                topic.clone(),
                QoS::AtLeastOnce,
                false,
                b"reprovision".to_vec(),
            )
            .await
            .map_err(|e| Failure::rejected(format!("MQTT publish: {e}")))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline, events.poll())
                .await
                .map_err(|_| {
                    Failure::rejected(format!("MQTT {}: no acknowledgement in 10 s", a.mqtt))
                })?;
            match ev {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(Failure::rejected(format!("MQTT {}: {e}", a.mqtt))),
            }
        }
        let _ = client.disconnect().await;
        println!("published {topic}");
        Ok(())
    })
}
