//! The MQTT link against a real mosquitto on loopback: reports delivered,
//! queued on disk while the broker is down (and across a restart of the
//! gateway) then all delivered, and release notifications trigger syncs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/process.rs"]
mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshota_gateway::mqtt::{Link, MqttConfig, Outbox, topics};
use mosquitto::{Mosquitto, free_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{Notify, mpsc};

const FLEET: &str = "north";
const NODE: &str = "00112233445566778899aabbccddeeff";

fn config(port: u16) -> MqttConfig {
    MqttConfig {
        broker: format!("127.0.0.1:{port}"),
        fleet: FLEET.into(),
        client_id: None,
        keep_alive_secs: 5,
        retry_secs: 1,
        queue_max: 1000,
    }
}

/// A running link and what drives it.
struct Running {
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    triggers: mpsc::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
    status: Arc<std::sync::Mutex<meshota_gateway::mqtt::LinkStatus>>,
}

fn start_link(port: u16, outbox: Arc<Outbox>) -> Running {
    let wake = Arc::new(Notify::new());
    let (tx, triggers) = mpsc::channel(1);
    let link = Link::new(config(port), NODE, outbox.clone(), wake.clone(), tx);
    let status = link.status();
    let task = tokio::spawn(link.run());
    Running {
        outbox,
        wake,
        triggers,
        task,
        status,
    }
}

/// A subscriber to `meshota/<fleet>/#` collecting (topic, payload).
async fn subscriber(port: u16) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut opts = MqttOptions::new(format!("sub-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    subscribe_with(opts).await
}

/// Connects with `opts`, subscribes to `meshota/<fleet>/#` at QoS 1 and
/// returns once the broker acknowledged the subscription.
async fn subscribe_with(
    opts: MqttOptions,
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let (client, mut events) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::channel(1);
    client
        .subscribe(format!("meshota/{FLEET}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready_tx.try_send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready.recv())
        .await
        .expect("subscribed within 10 s");
    (client, rx)
}

/// A subscriber like [`subscriber`] whose session the broker keeps while
/// it is away (clean session off, fixed client id `id`): QoS 1 messages
/// published meanwhile are queued for it and delivered when it returns.
async fn persistent_subscriber(
    port: u16,
    id: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    subscribe_with(opts).await
}

/// Collects messages until `n` on `topic` arrived (bounded: 20 s).
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    topic: &str,
    n: usize,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((t, p))) if t == topic => got.push(p),
            Ok(Some(_)) => {}
            _ => panic!("{} of {n} messages on {topic} after 20 s", got.len()),
        }
    }
    got
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_a_subscriber_in_order_and_leave_the_outbox_once_acknowledged() {
    let broker = Mosquitto::start(free_port());
    let (_sub, mut rx) = subscriber(broker.port).await;
    let d = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&d.path().join("outbox.redb"), 1000).unwrap());
    let run = start_link(broker.port, outbox);
    let topic = topics::report(FLEET, NODE);
    for i in 0..10u8 {
        run.outbox.push(&topic, &[b'r', i]).unwrap();
    }
    run.outbox
        .set_latest(&topics::summary(FLEET), b"{\"nodes\":1}")
        .unwrap();
    run.wake.notify_one();
    let got = collect(&mut rx, &topic, 10).await;
    assert_eq!(got, (0..10u8).map(|i| vec![b'r', i]).collect::<Vec<_>>());
    let summary = collect(&mut rx, &topics::summary(FLEET), 1).await;
    assert_eq!(summary[0], b"{\"nodes\":1}");
    let ob = run.outbox.clone();
    let st = run.status.clone();
    // The count follows each outbox commit: wait for both.
    wait_until("the outbox empties and the link counts 11", || {
        ob.is_empty().unwrap()
            && ob.latest().unwrap().is_empty()
            && st.lock().unwrap().delivered >= 11
    })
    .await;
    run.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_reports_queue_on_disk_across_a_restart_and_all_arrive_once_it_is_up()
{
    let port = free_port();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("outbox.redb");
    let topic = topics::report(FLEET, NODE);
    // Broker down: the link keeps trying; reports pile up on disk.
    {
        let outbox = Arc::new(Outbox::open(&path, 1000).unwrap());
        let run = start_link(port, outbox);
        for i in 0..25u8 {
            run.outbox.push(&topic, &[i]).unwrap();
            run.wake.notify_one();
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(run.outbox.len().unwrap(), 25);
        {
            let s = run.status.lock().unwrap();
            assert!(!s.connected);
            assert!(s.last_error.is_some(), "{s:?}");
        }
        // The gateway stops (or crashes) before the broker returns.
        run.task.abort();
        let _ = run.task.await;
    }
    // The broker comes up (a subscriber waiting on it), and the gateway
    // restarts with the same outbox file.
    let broker = Mosquitto::start(port);
    let (_sub, mut rx) = subscriber(broker.port).await;
    let outbox = Arc::new(Outbox::open(&path, 1000).unwrap());
    assert_eq!(
        outbox.len().unwrap(),
        25,
        "queued reports survive the restart"
    );
    let run = start_link(port, outbox);
    let got = collect(&mut rx, &topic, 25).await;
    assert_eq!(got, (0..25u8).map(|i| vec![i]).collect::<Vec<_>>());
    let ob = run.outbox.clone();
    let st = run.status.clone();
    wait_until("every queued report is acknowledged and counted", || {
        ob.is_empty().unwrap() && st.lock().unwrap().delivered == 25
    })
    .await;
    assert_eq!(run.status.lock().unwrap().delivered, 25, "none twice");
    run.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_queued_while_the_broker_was_down_reaches_a_subscriber_waiting_for_it() {
    // A subscriber with a persistent session: the broker keeps its
    // subscription, and queues what arrives while it is away, across the
    // broker's own restart. So the link may reconnect whenever it likes.
    let port = free_port();
    let state = tempfile::tempdir().unwrap();
    let broker_first = Mosquitto::start_persistent(port, state.path());
    let sub_id = format!("sub-persistent-{}", free_port());
    let (sub, rx) = persistent_subscriber(port, &sub_id).await;
    sub.disconnect().await.unwrap();
    drop(rx);
    broker_first.stop_gracefully();

    let d = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&d.path().join("outbox.redb"), 1000).unwrap());
    let run = start_link(port, outbox);
    let topic = topics::report(FLEET, NODE);
    for i in 0..30u8 {
        run.outbox.push(&topic, &[i]).unwrap();
        run.wake.notify_one();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        run.outbox.len().unwrap(),
        30,
        "nothing leaves while the broker is down"
    );
    {
        let s = run.status.lock().unwrap();
        assert!(!s.connected && s.last_error.is_some(), "{s:?}");
    }
    // The broker returns: the running link reconnects by itself (retrying
    // every second) and delivers everything.
    let _broker = Mosquitto::start_persistent(port, state.path());
    let ob = run.outbox.clone();
    wait_until("the outbox empties", || ob.is_empty().unwrap()).await;
    let (_sub2, mut rx2) = persistent_subscriber(port, &sub_id).await;
    let got = collect(&mut rx2, &topic, 30).await;
    assert_eq!(got, (0..30u8).map(|i| vec![i]).collect::<Vec<_>>());
    run.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_the_releases_topic_triggers_an_origin_sync() {
    let broker = Mosquitto::start(free_port());
    let d = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&d.path().join("outbox.redb"), 1000).unwrap());
    let mut run = start_link(broker.port, outbox);
    let st = run.status.clone();
    wait_until("the link subscribes to release notifications", || {
        st.lock().unwrap().subscribed
    })
    .await;
    assert!(
        run.triggers.try_recv().is_err(),
        "no trigger before a notification"
    );
    let mut opts = MqttOptions::new("publisher", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 8);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
        .publish(
            topics::releases(FLEET),
            QoS::AtLeastOnce,
            false,
            b"{\"release\":\"ab\"}".to_vec(),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), run.triggers.recv())
        .await
        .expect("a trigger within 10 s")
        .unwrap();
    assert_eq!(run.status.lock().unwrap().notifications, 1);
    run.task.abort();
}
