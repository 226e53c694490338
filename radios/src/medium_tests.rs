use super::*;
use crate::dutycycle::DutyCycleBudget;
use crate::lora::{Bandwidth, SpreadingFactor};
use alloc::vec;

const G1: u32 = 868_100_000;
const G3: u32 = 869_525_000;

fn sf7() -> Channel {
    Channel {
        freq_hz: G1,
        params: LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125),
    }
}

/// `n` nodes where every pair has a path loss of `db`, except the
/// overrides `(from, to, db)` (applied both ways).
fn matrix(n: usize, db: f64, overrides: &[(usize, usize, f64)], config: MediumConfig) -> Medium {
    let mut m = vec![Some(db); n * n];
    for &(a, b, l) in overrides {
        m[a * n + b] = Some(l);
        m[b * n + a] = Some(l);
    }
    Medium::with_link_matrix(config, n, m, 1).unwrap()
}

fn no_capture() -> MediumConfig {
    MediumConfig {
        capture_db: None,
        ..MediumConfig::eu868()
    }
}

fn outcome_at(r: &[Reception], from: usize, to: usize) -> Result<Vec<u8>, Loss> {
    r.iter()
        .find(|x| x.from == from && x.to == to)
        .map(|x| x.outcome.clone())
        .unwrap()
}

#[test]
fn overlapping_frames_on_the_same_channel_and_sf_collide() {
    let mut m = matrix(3, 100.0, &[], no_capture());
    m.transmit(Micros(0), 0, sf7(), vec![1; 10]).unwrap();
    m.transmit(Micros(20_000), 1, sf7(), vec![2; 10]).unwrap();
    let r = m.advance(Micros(1_000_000)).unwrap();
    assert_eq!(outcome_at(&r, 0, 2), Err(Loss::Collision));
    assert_eq!(outcome_at(&r, 1, 2), Err(Loss::Collision));
}

#[test]
fn frames_that_do_not_overlap_in_time_channel_or_sf_both_arrive() {
    // Back to back: the second starts when the first ends.
    let mut m = matrix(3, 100.0, &[], no_capture());
    let first = m.transmit(Micros(0), 0, sf7(), vec![1; 10]).unwrap();
    m.transmit(first.end, 1, sf7(), vec![2; 10]).unwrap();
    let r = m.advance(Micros(1_000_000)).unwrap();
    assert_eq!(outcome_at(&r, 0, 2), Ok(vec![1; 10]));
    assert_eq!(outcome_at(&r, 1, 2), Ok(vec![2; 10]));
    // Same time, another spreading factor, and another frequency.
    let mut m = matrix(4, 100.0, &[], no_capture());
    let sf9 = Channel {
        params: LoraParams::new(SpreadingFactor::Sf9, Bandwidth::Khz125),
        ..sf7()
    };
    let other_freq = Channel {
        freq_hz: G3,
        ..sf7()
    };
    m.transmit(Micros(0), 0, sf7(), vec![1; 10]).unwrap();
    m.transmit(Micros(0), 1, sf9, vec![2; 10]).unwrap();
    m.transmit(Micros(0), 2, other_freq, vec![3; 10]).unwrap();
    let r = m.advance(Micros(1_000_000)).unwrap();
    assert_eq!(outcome_at(&r, 0, 3), Ok(vec![1; 10]));
    assert_eq!(outcome_at(&r, 1, 3), Ok(vec![2; 10]));
    assert_eq!(outcome_at(&r, 2, 3), Ok(vec![3; 10]));
}

#[test]
fn capture_lets_a_frame_six_db_stronger_survive() {
    // Node 0 is 10 dB closer to node 2 than node 1 is.
    let mut m = matrix(3, 100.0, &[(1, 2, 110.0)], MediumConfig::eu868());
    m.transmit(Micros(0), 0, sf7(), vec![1; 10]).unwrap();
    m.transmit(Micros(5_000), 1, sf7(), vec![2; 10]).unwrap();
    let r = m.advance(Micros(1_000_000)).unwrap();
    assert_eq!(outcome_at(&r, 0, 2), Ok(vec![1; 10]));
    assert_eq!(outcome_at(&r, 1, 2), Err(Loss::Collision));
    // Only 3 dB apart: both lost even with capture on.
    let mut m = matrix(3, 100.0, &[(1, 2, 103.0)], MediumConfig::eu868());
    m.transmit(Micros(0), 0, sf7(), vec![1; 10]).unwrap();
    m.transmit(Micros(5_000), 1, sf7(), vec![2; 10]).unwrap();
    let r = m.advance(Micros(1_000_000)).unwrap();
    assert_eq!(outcome_at(&r, 0, 2), Err(Loss::Collision));
    assert_eq!(outcome_at(&r, 1, 2), Err(Loss::Collision));
}

#[test]
fn a_transmitting_node_hears_nothing() {
    let mut m = matrix(3, 100.0, &[], no_capture());
    // Node 1 starts sending on another frequency (no collision) while
    // node 0's frame is on air: node 1 misses it, node 2 gets it.
    let other = Channel {
        freq_hz: G3,
        ..sf7()
    };
    m.transmit(Micros(0), 0, sf7(), vec![1; 10]).unwrap();
    let busy = m.transmit(Micros(30_000), 1, other, vec![2; 10]).unwrap();
    assert_eq!(
        m.transmit(Micros(31_000), 1, other, vec![3]),
        Err(Error::RadioBusy {
            node: 1,
            until: busy.end
        })
    );
    let r = m.advance(Micros(1_000_000)).unwrap();
    assert_eq!(outcome_at(&r, 0, 1), Err(Loss::HalfDuplex));
    assert_eq!(outcome_at(&r, 0, 2), Ok(vec![1; 10]));
    // Node 0's own radio is busy sending too: it misses node 1's frame.
    assert_eq!(outcome_at(&r, 1, 0), Err(Loss::HalfDuplex));
}

#[test]
fn extra_loss_rate_stays_within_bounds_for_a_fixed_seed() {
    let config = MediumConfig {
        extra_loss: 0.1,
        ..MediumConfig::eu868()
    };
    let mut m = matrix(2, 100.0, &[], config);
    let mut now = Micros(0);
    let mut lost = 0;
    let frames = 2_000;
    for _ in 0..frames {
        let sent = m.transmit(now, 0, sf7(), vec![0; 10]).unwrap();
        now = sent.end;
        let r = m.advance(now).unwrap();
        assert_eq!(r.len(), 1);
        lost += usize::from(r[0].outcome.is_err());
    }
    // Binomial(2000, 0.1): mean 200, sd 13.4; bounds at about 3.7 sd.
    assert!((150..=250).contains(&lost), "lost {lost} of {frames}");
}

#[test]
fn path_loss_turns_distance_into_packet_error_rate() {
    // SF7/125 kHz, 14 dBm, exponent 3: the margin is zero near 3.77 km.
    let positions = [(0.0, 0.0), (1_000.0, 0.0), (3_774.0, 0.0), (20_000.0, 0.0)];
    let mut m = Medium::with_positions(MediumConfig::eu868(), &positions, 9);
    assert!(!m.in_range(0, 3, sf7().params));
    let mut now = Micros(0);
    let (mut near, mut edge) = (0, 0);
    for _ in 0..1_000 {
        let sent = m.transmit(now, 0, sf7(), vec![0; 10]).unwrap();
        now = sent.end;
        for r in m.advance(now).unwrap() {
            assert_ne!(r.to, 3, "20 km away is out of range");
            match (r.to, r.outcome.is_ok()) {
                (1, true) => near += 1,
                (2, true) => edge += 1,
                _ => {}
            }
        }
    }
    assert_eq!(near, 1_000);
    assert!((400..=600).contains(&edge), "edge node got {edge} of 1000");
}

fn random_run(seed: u64) -> Vec<(u64, usize, Result<Vec<u8>, Loss>)> {
    let config = MediumConfig {
        extra_loss: 0.2,
        ..MediumConfig::eu868()
    };
    let positions: Vec<(f64, f64)> = (0..8).map(|i| (f64::from(i) * 900.0, 0.0)).collect();
    let mut m = Medium::with_positions(config, &positions, seed);
    let mut trace = Vec::new();
    let mut pick = SeededRng::new(42);
    let mut now = Micros(0);
    for _ in 0..300 {
        now = now.plus(pick.next_u64() % 50_000);
        let node = usize::try_from(pick.next_u64() % 8).unwrap();
        let _ = m.transmit(now, node, sf7(), vec![node as u8; 12]);
        for r in m.advance(now).unwrap() {
            trace.push((r.frame, r.to, r.outcome));
        }
    }
    for r in m.advance(now.plus(10_000_000)).unwrap() {
        trace.push((r.frame, r.to, r.outcome));
    }
    trace
}

#[test]
fn same_seed_gives_the_same_trace() {
    let a = random_run(5);
    assert!(a.len() > 300);
    assert!(a.iter().any(|x| x.2 == Err(Loss::Collision)));
    assert_eq!(a, random_run(5));
    assert_ne!(a, random_run(6));
}

#[test]
fn checker_counts_a_node_that_ignores_its_duty_cycle_and_not_one_that_follows_it() {
    let mut m = matrix(2, 100.0, &[], MediumConfig::eu868());
    let sf12 = Channel {
        params: LoraParams::new(SpreadingFactor::Sf12, Bandwidth::Khz125),
        ..sf7()
    };
    let airtime = sf12.params.time_on_air_us(40).unwrap();
    // Node 1 sends 40 frames of ~1.8 s back to back: twice its 36 s.
    let mut now = Micros(0);
    for _ in 0..40 {
        now = m.transmit(now, 1, sf12, vec![0; 40]).unwrap().end;
    }
    // Node 0 then follows its budget for 100 frames.
    let mut budget = DutyCycleBudget::new(crate::region::EU868);
    for _ in 0..100 {
        let at = budget.earliest(now, G1, airtime).unwrap();
        budget.try_transmit(at, G1, airtime).unwrap();
        now = m.transmit(at, 0, sf12, vec![0; 40]).unwrap().end;
        m.advance(now).unwrap();
    }
    let violators: Vec<usize> = m.duty_cycle_violations().iter().map(|v| v.node).collect();
    assert!(!violators.is_empty());
    assert!(violators.iter().all(|&n| n == 1), "{violators:?}");
    assert_eq!(m.airtime_us(0), 100 * airtime);
    // 100 frames of ~1.8 s at 1 % need about five hours: the budget waited.
    assert!(now.0 > 4 * Micros::HOUR);
}

#[test]
fn misuse_is_a_typed_error_and_sends_nothing() {
    let mut m = matrix(2, 100.0, &[], MediumConfig::eu868());
    assert_eq!(
        m.transmit(Micros(0), 2, sf7(), vec![]),
        Err(Error::UnknownNode { node: 2 })
    );
    m.advance(Micros(100)).unwrap();
    assert!(matches!(
        m.transmit(Micros(99), 0, sf7(), vec![]),
        Err(Error::TimeWentBackwards { .. })
    ));
    assert!(matches!(
        m.transmit(Micros(200), 0, sf7(), vec![0; 256]),
        Err(Error::PayloadTooLong { .. })
    ));
    assert_eq!(m.next_event(), None);
    assert!(matches!(
        Medium::with_link_matrix(MediumConfig::eu868(), 3, vec![None; 8], 0),
        Err(Error::LinkMatrixSize { got: 8, nodes: 3 })
    ));
}
