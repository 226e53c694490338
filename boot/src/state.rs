//! Sans-IO boot-selection logic: which slot a bootloader boots, how trial
//! counters run down, and what marking a slot for trial, good or bad does.
//!
//! Everything here uses only `core` and `alloc`: no clock, no files. The three
//! [`BootScheme`]s are models of real boot scripts, so that tests (and the
//! simulated bootloader) can run the exact decision a device makes at power-on:
//! - [`SimState`]: meshota's own simulated bootloader (sticky "good" flag plus
//!   a trial counter);
//! - [`UbootState`]: RAUC's U-Boot script (`BOOT_ORDER`, `BOOT_x_LEFT`);
//! - [`GrubState`]: RAUC's GRUB script (`ORDER`, `x_OK`, `x_TRY`).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// One of the two A/B slots. Invariant: exactly two slots exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlotId {
    /// The first slot (RAUC bootname `A`).
    A,
    /// The second slot (RAUC bootname `B`).
    B,
}

impl SlotId {
    /// Both slots, A first.
    pub const ALL: [SlotId; 2] = [SlotId::A, SlotId::B];

    /// The other slot.
    #[must_use]
    pub const fn other(self) -> Self {
        match self {
            SlotId::A => SlotId::B,
            SlotId::B => SlotId::A,
        }
    }

    /// 0 for A, 1 for B: the index into per-slot arrays.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            SlotId::A => 0,
            SlotId::B => 1,
        }
    }

    /// The RAUC bootname: `"A"` or `"B"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            SlotId::A => "A",
            SlotId::B => "B",
        }
    }

    /// Parses a bootname (`A`/`B`, either case); `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "A" | "a" => Some(SlotId::A),
            "B" | "b" => Some(SlotId::B),
            _ => None,
        }
    }

    /// Reads the booted slot from a kernel command line (`rauc.slot=A`, as
    /// RAUC's boot scripts pass it). `None` when absent or unknown.
    #[must_use]
    pub fn from_cmdline(cmdline: &str) -> Option<Self> {
        cmdline
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix("rauc.slot="))
            .and_then(Self::parse)
    }
}

/// What a bootloader will do with one slot, as far as its state tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    /// The bootloader would boot this slot if it came first in the order.
    pub bootable: bool,
    /// Boots left before the bootloader gives up on the slot; `None` when the
    /// slot is confirmed and boots without a limit.
    pub tries_left: Option<u8>,
}

/// A backend-neutral view of boot-control state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStatus {
    /// The slot the bootloader tries first.
    pub primary: SlotId,
    /// Per-slot status, indexed by [`SlotId::index`].
    pub slots: [SlotStatus; 2],
}

impl BootStatus {
    /// Status of one slot.
    #[must_use]
    pub const fn slot(&self, id: SlotId) -> SlotStatus {
        self.slots[id.index()]
    }

    /// The primary slot was switched to but the bootloader gave up on it:
    /// the trial ran out (or the slot was never bootable).
    #[must_use]
    pub const fn primary_exhausted(&self) -> bool {
        !self.slot(self.primary).bootable
    }
}

/// The outcome of one simulated power-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootChoice {
    /// The slot the bootloader starts.
    pub slot: SlotId,
    /// The primary slot was skipped (its trial ran out or it is marked bad).
    pub fell_back: bool,
    /// No slot was bootable and the scheme's last-resort rule picked one
    /// (U-Boot and GRUB reset their counters; the simulated bootloader boots
    /// the primary). A device reaching this has had both slots marked bad.
    pub last_resort: bool,
}

/// A bootloader's slot-selection rules over its own state.
///
/// Invariant of every implementation: [`BootScheme::boot`] always returns a
/// slot (a device never ends with nothing to boot), and a slot marked bad is
/// never chosen while the other slot is bootable.
pub trait BootScheme: Clone + core::fmt::Debug {
    /// The most trial boots [`BootScheme::mark_trial`] can express.
    fn max_trial_boots(&self) -> u8;
    /// Performs the bootloader's power-on decision, updating counters as the
    /// real boot script would.
    fn boot(&mut self) -> BootChoice;
    /// Makes `slot` primary with `tries` trial boots (clamped to
    /// `1..=max_trial_boots`); the other slot stays as it is, as the fallback.
    fn mark_trial(&mut self, slot: SlotId, tries: u8);
    /// Confirms `slot`: it stays bootable.
    fn mark_good(&mut self, slot: SlotId);
    /// Makes `slot` unbootable; if it was primary, the other slot becomes primary.
    fn mark_bad(&mut self, slot: SlotId);
    /// A backend-neutral view.
    fn status(&self) -> BootStatus;
}

fn clamp_tries(tries: u8, max: u8) -> u8 {
    tries.clamp(1, max.max(1))
}

/// The order with `slot` first.
const fn order_with_first(slot: SlotId) -> [SlotId; 2] {
    [slot, slot.other()]
}

/// Most trial boots the simulated bootloader allows.
pub const SIM_MAX_TRIAL_BOOTS: u8 = 16;

/// One slot in the simulated bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSlot {
    /// Confirmed: boots without consuming tries.
    pub good: bool,
    /// Trial boots left (meaningful while `good` is false).
    pub tries_left: u8,
}

/// State of meshota's simulated bootloader, stored in double-buffered records.
///
/// Invariant: `order` holds both slots once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    /// Boot order, first is primary.
    pub order: [SlotId; 2],
    /// Per-slot state, indexed by [`SlotId::index`].
    pub slots: [SimSlot; 2],
    /// The slot the last power-on booted (`None` before the first boot).
    pub booted: Option<SlotId>,
    /// Power-ons so far (wrapping).
    pub boot_count: u32,
}

impl SimState {
    /// Factory state: `initial` confirmed and primary, the other slot empty.
    #[must_use]
    pub const fn factory(initial: SlotId) -> Self {
        let mut slots = [SimSlot {
            good: false,
            tries_left: 0,
        }; 2];
        slots[initial.index()].good = true;
        Self {
            order: order_with_first(initial),
            slots,
            booted: None,
            boot_count: 0,
        }
    }

    fn normalise_order(&mut self) {
        if self.order[0] == self.order[1] {
            self.order = order_with_first(self.order[0]);
        }
    }
}

impl BootScheme for SimState {
    fn max_trial_boots(&self) -> u8 {
        SIM_MAX_TRIAL_BOOTS
    }

    fn boot(&mut self) -> BootChoice {
        self.normalise_order();
        self.boot_count = self.boot_count.wrapping_add(1);
        let primary = self.order[0];
        for slot in self.order {
            let s = &mut self.slots[slot.index()];
            if s.good {
                self.booted = Some(slot);
                return BootChoice {
                    slot,
                    fell_back: slot != primary,
                    last_resort: false,
                };
            }
            if s.tries_left > 0 {
                s.tries_left -= 1;
                self.booted = Some(slot);
                return BootChoice {
                    slot,
                    fell_back: slot != primary,
                    last_resort: false,
                };
            }
        }
        self.booted = Some(primary);
        BootChoice {
            slot: primary,
            fell_back: false,
            last_resort: true,
        }
    }

    fn mark_trial(&mut self, slot: SlotId, tries: u8) {
        self.order = order_with_first(slot);
        self.slots[slot.index()] = SimSlot {
            good: false,
            tries_left: clamp_tries(tries, SIM_MAX_TRIAL_BOOTS),
        };
    }

    fn mark_good(&mut self, slot: SlotId) {
        self.slots[slot.index()] = SimSlot {
            good: true,
            tries_left: 0,
        };
    }

    fn mark_bad(&mut self, slot: SlotId) {
        self.normalise_order();
        self.slots[slot.index()] = SimSlot {
            good: false,
            tries_left: 0,
        };
        if self.order[0] == slot {
            self.order = order_with_first(slot.other());
        }
    }

    fn status(&self) -> BootStatus {
        let st = |id: SlotId| {
            let s = self.slots[id.index()];
            SlotStatus {
                bootable: s.good || s.tries_left > 0,
                tries_left: if s.good { None } else { Some(s.tries_left) },
            }
        };
        BootStatus {
            primary: self.order[0],
            slots: [st(SlotId::A), st(SlotId::B)],
        }
    }
}

/// RAUC's default number of boot attempts for U-Boot (`BOOT_x_LEFT` after mark-good).
pub const UBOOT_DEFAULT_ATTEMPTS: u8 = 3;

/// State of RAUC's U-Boot boot script: `BOOT_ORDER` and `BOOT_A_LEFT`/`BOOT_B_LEFT`.
///
/// Invariant: `order` holds each slot at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootState {
    /// `BOOT_ORDER`, e.g. `[A, B]` for `"A B"`. A slot absent from it is never booted.
    pub order: Vec<SlotId>,
    /// `BOOT_A_LEFT`, `BOOT_B_LEFT`.
    pub left: [u8; 2],
    /// Attempts written by mark-good and by the script's reset (RAUC: 3).
    pub default_attempts: u8,
}

impl UbootState {
    /// The state RAUC's script assumes when the variables are unset:
    /// `BOOT_ORDER="A B"`, both slots with the default attempts.
    #[must_use]
    pub fn script_defaults(default_attempts: u8) -> Self {
        Self {
            order: Vec::from(SlotId::ALL),
            left: [default_attempts; 2],
            default_attempts,
        }
    }

    fn primary(&self) -> SlotId {
        self.order.first().copied().unwrap_or(SlotId::A)
    }

    fn put_first(&mut self, slot: SlotId) {
        self.order = Vec::from(order_with_first(slot));
    }
}

impl BootScheme for UbootState {
    fn max_trial_boots(&self) -> u8 {
        u8::MAX
    }

    fn boot(&mut self) -> BootChoice {
        let primary = self.primary();
        // Bounded: the order holds at most two entries that matter.
        for &slot in self.order.iter().take(SlotId::ALL.len()) {
            let left = &mut self.left[slot.index()];
            if *left > 0 {
                *left -= 1;
                return BootChoice {
                    slot,
                    fell_back: slot != primary,
                    last_resort: false,
                };
            }
        }
        // "No valid slot found, resetting tries to 3", saveenv, reset; the
        // next power-on then picks the first slot in the order.
        self.left = [self.default_attempts; 2];
        let slot = primary;
        self.left[slot.index()] = self.left[slot.index()].saturating_sub(1);
        BootChoice {
            slot,
            fell_back: false,
            last_resort: true,
        }
    }

    fn mark_trial(&mut self, slot: SlotId, tries: u8) {
        self.put_first(slot);
        self.left[slot.index()] = clamp_tries(tries, u8::MAX);
    }

    fn mark_good(&mut self, slot: SlotId) {
        self.left[slot.index()] = self.default_attempts;
    }

    fn mark_bad(&mut self, slot: SlotId) {
        self.left[slot.index()] = 0;
        if self.primary() == slot {
            self.put_first(slot.other());
        }
    }

    fn status(&self) -> BootStatus {
        let st = |id: SlotId| SlotStatus {
            bootable: self.left[id.index()] > 0 && self.order.contains(&id),
            tries_left: Some(self.left[id.index()]),
        };
        BootStatus {
            primary: self.primary(),
            slots: [st(SlotId::A), st(SlotId::B)],
        }
    }
}

/// State of RAUC's GRUB script: `ORDER`, `A_OK`, `A_TRY`, `B_OK`, `B_TRY`.
///
/// Invariant: `order` holds each slot at most once. GRUB's script cannot
/// count, so a trial is exactly one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubState {
    /// `ORDER`, e.g. `[A, B]` for `"A B"`.
    pub order: Vec<SlotId>,
    /// `A_OK`, `B_OK`.
    pub ok: [bool; 2],
    /// `A_TRY`, `B_TRY`: the script set it on the way to booting the slot.
    pub tried: [bool; 2],
}

impl GrubState {
    /// What RAUC's `grub.cfg` sets before `load_env`: order "A B", nothing OK.
    #[must_use]
    pub fn script_defaults() -> Self {
        Self {
            order: Vec::from(SlotId::ALL),
            ok: [false; 2],
            tried: [false; 2],
        }
    }

    fn primary(&self) -> SlotId {
        self.order.first().copied().unwrap_or(SlotId::A)
    }
}

impl BootScheme for GrubState {
    fn max_trial_boots(&self) -> u8 {
        1
    }

    fn boot(&mut self) -> BootChoice {
        let primary = self.primary();
        for &slot in self.order.iter().take(SlotId::ALL.len()) {
            let i = slot.index();
            let (ok, tried) = (self.ok[i], self.tried[i]);
            self.tried[i] = true;
            if ok && !tried {
                return BootChoice {
                    slot,
                    fell_back: slot != primary,
                    last_resort: false,
                };
            }
        }
        // any_ok=0: reset the try flags of OK slots, boot menu entry 0 (A).
        for i in 0..2 {
            if self.ok[i] && self.tried[i] {
                self.tried[i] = false;
            }
        }
        BootChoice {
            slot: SlotId::A,
            fell_back: SlotId::A != primary,
            last_resort: true,
        }
    }

    fn mark_trial(&mut self, slot: SlotId, _tries: u8) {
        self.order = Vec::from(order_with_first(slot));
        self.ok[slot.index()] = true;
        self.tried[slot.index()] = false;
    }

    fn mark_good(&mut self, slot: SlotId) {
        self.ok[slot.index()] = true;
        self.tried[slot.index()] = false;
    }

    fn mark_bad(&mut self, slot: SlotId) {
        self.ok[slot.index()] = false;
        self.tried[slot.index()] = false;
        if self.primary() == slot {
            self.order = Vec::from(order_with_first(slot.other()));
        }
    }

    fn status(&self) -> BootStatus {
        let st = |id: SlotId| {
            let bootable =
                self.ok[id.index()] && !self.tried[id.index()] && self.order.contains(&id);
            SlotStatus {
                bootable,
                tries_left: Some(u8::from(bootable)),
            }
        };
        BootStatus {
            primary: self.primary(),
            slots: [st(SlotId::A), st(SlotId::B)],
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A scheme with `A` confirmed and primary, as after a factory install.
    fn confirmed_a<S: BootScheme>(mut s: S) -> S {
        s.mark_trial(SlotId::A, 1);
        let _ = s.boot();
        s.mark_good(SlotId::A);
        s
    }

    fn schemes() -> (SimState, UbootState, GrubState) {
        (
            confirmed_a(SimState::factory(SlotId::A)),
            confirmed_a(UbootState::script_defaults(UBOOT_DEFAULT_ATTEMPTS)),
            confirmed_a(GrubState::script_defaults()),
        )
    }

    fn falls_back_after_trials<S: BootScheme>(mut s: S, tries: u8) {
        s.mark_trial(SlotId::B, tries);
        let expect = tries.clamp(1, s.max_trial_boots());
        for _ in 0..expect {
            let c = s.boot();
            assert_eq!(c.slot, SlotId::B, "{s:?}");
            assert!(!c.fell_back);
        }
        let c = s.boot();
        assert_eq!(c.slot, SlotId::A, "{s:?}");
        assert!(c.fell_back);
        assert!(!c.last_resort);
        assert!(s.status().primary_exhausted());
    }

    #[test]
    fn falls_back_to_previous_slot_when_trials_run_out() {
        let (sim, ub, gr) = schemes();
        falls_back_after_trials(sim, 3);
        falls_back_after_trials(ub, 3);
        falls_back_after_trials(gr, 3);
    }

    fn confirmed_trial_keeps_booting<S: BootScheme>(mut s: S) {
        s.mark_trial(SlotId::B, 2);
        for _ in 0..10 {
            assert_eq!(s.boot().slot, SlotId::B);
            // Userspace confirms on every boot, as RAUC's mark-good service does.
            s.mark_good(SlotId::B);
        }
    }

    #[test]
    fn confirmed_slot_keeps_booting_when_marked_good_each_boot() {
        let (sim, ub, gr) = schemes();
        confirmed_trial_keeps_booting(sim);
        confirmed_trial_keeps_booting(ub);
        confirmed_trial_keeps_booting(gr);
    }

    fn bad_slot_is_never_chosen<S: BootScheme>(mut s: S) {
        s.mark_trial(SlotId::B, 2);
        s.mark_bad(SlotId::B);
        assert_eq!(s.status().primary, SlotId::A);
        for _ in 0..5 {
            assert_eq!(s.boot().slot, SlotId::A);
            s.mark_good(SlotId::A);
        }
    }

    #[test]
    fn slot_marked_bad_is_never_booted_while_the_other_is_good() {
        let (sim, ub, gr) = schemes();
        bad_slot_is_never_chosen(sim);
        bad_slot_is_never_chosen(ub);
        bad_slot_is_never_chosen(gr);
    }

    #[test]
    fn simulated_bootloader_confirmed_slot_needs_no_remarking() {
        let mut s = SimState::factory(SlotId::A);
        for _ in 0..100 {
            assert_eq!(s.boot().slot, SlotId::A);
        }
        assert_eq!(s.status().slot(SlotId::A).tries_left, None);
    }

    #[test]
    fn uboot_script_resets_counters_when_no_slot_is_left() {
        let mut s = UbootState::script_defaults(3);
        s.left = [0, 0];
        let c = s.boot();
        assert!(c.last_resort);
        assert_eq!(c.slot, SlotId::A);
        assert_eq!(s.left, [2, 3]);
    }

    #[test]
    fn grub_script_boots_entry_zero_and_clears_try_flags_when_no_slot_is_left() {
        let mut s = GrubState::script_defaults();
        s.order = Vec::from([SlotId::B, SlotId::A]);
        s.ok = [true, true];
        s.tried = [true, true];
        let c = s.boot();
        assert!(c.last_resort);
        assert_eq!(c.slot, SlotId::A);
        assert_eq!(s.tried, [false, false]);
    }

    #[test]
    fn booted_slot_is_read_from_rauc_kernel_argument() {
        assert_eq!(
            SlotId::from_cmdline("quiet rauc.slot=B root=/dev/sda3"),
            Some(SlotId::B)
        );
        assert_eq!(SlotId::from_cmdline("quiet"), None);
        assert_eq!(SlotId::from_cmdline("rauc.slot=C"), None);
    }
}
