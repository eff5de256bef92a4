//! The set of half-open flows, so that a full table can evict one of them
//! before any established flow (Linux's `early_drop`, which only takes
//! entries without `IPS_ASSURED`).
//!
//! A flow is half-open ([`is_half_open`]) while it is not what Linux calls
//! assured: a TCP flow whose handshake has not completed (`SynSent`,
//! `SynRecv`) or that a RST closed (`Close`: nothing more is owed to it),
//! any other flow until a packet was seen in the reply direction. A SYN
//! flood, a port scan and a flood of one-way datagrams make only half-open
//! flows.
//!
//! The set is a dense list of slots of [`super::Conntrack::flows`], with a
//! parallel array giving each flow's position in the list (or [`ABSENT`]):
//! adding, removing and testing are O(1), and a uniform draw from the list
//! is one index. The table keeps it in step at every change of a flow's
//! state and every move of a flow between slots.

use super::{Flow, TcpState, proto};

/// [`HalfOpen::at`] of a flow not in the set.
const ABSENT: u32 = u32::MAX;

/// Whether a flow is half-open (see the module docs).
#[inline]
pub(super) fn is_half_open(flow: &Flow) -> bool {
    match flow.tcp {
        Some(state) => matches!(
            state,
            TcpState::SynSent | TcpState::SynRecv | TcpState::Close
        ),
        None if flow.key.proto == proto::TCP => true,
        None => !flow.seen_reply(),
    }
}

/// The half-open flows of a table, by slot.
#[derive(Debug)]
pub(super) struct HalfOpen {
    /// Slots of the half-open flows, in no order.
    slots: Vec<u32>,
    /// Per slot of the table: the position of that flow in `slots`, or
    /// [`ABSENT`].
    at: Vec<u32>,
}

impl HalfOpen {
    /// An empty set for a table of `capacity` flows, allocated now.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            at: Vec::with_capacity(capacity),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        (self.slots.capacity() + self.at.capacity()) * size_of::<u32>()
    }

    /// How many flows are half-open.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot of the `i`th half-open flow (`i < len()`).
    #[inline]
    pub(super) fn get(&self, i: usize) -> usize {
        self.slots[i] as usize
    }

    /// A flow was pushed into the last slot of the table.
    #[inline]
    pub(super) fn push(&mut self, half_open: bool) {
        let slot = self.at.len() as u32;
        self.at.push(ABSENT);
        if half_open {
            self.add(slot);
        }
    }

    /// The flow in `slot` is now half-open or not.
    #[inline]
    pub(super) fn set(&mut self, slot: usize, half_open: bool) {
        match (self.at[slot] != ABSENT, half_open) {
            (false, true) => self.add(slot as u32),
            (true, false) => self.take(slot),
            _ => {}
        }
    }

    /// The flow in `slot` is removed and the table's last flow moves into
    /// `slot` (as `Vec::swap_remove`).
    #[inline]
    pub(super) fn swap_remove(&mut self, slot: usize) {
        if self.at[slot] != ABSENT {
            self.take(slot);
        }
        let last = self.at.len() - 1;
        if slot != last {
            let moved = self.at[last];
            if moved != ABSENT {
                self.slots[moved as usize] = slot as u32;
            }
            self.at[slot] = moved;
        }
        self.at.pop();
    }

    fn add(&mut self, slot: u32) {
        self.at[slot as usize] = self.slots.len() as u32;
        self.slots.push(slot);
    }

    fn take(&mut self, slot: usize) {
        let i = self.at[slot] as usize;
        self.at[slot] = ABSENT;
        self.slots.swap_remove(i);
        if let Some(&moved) = self.slots.get(i) {
            self.at[moved as usize] = i as u32;
        }
    }

    /// Whether the set is exactly the half-open flows of `flows` (tests).
    #[cfg(test)]
    pub(super) fn matches(&self, flows: &[Flow]) -> bool {
        self.at.len() == flows.len()
            && flows.iter().enumerate().all(|(slot, f)| {
                let i = self.at[slot];
                if is_half_open(f) {
                    i != ABSENT && self.slots[i as usize] == slot as u32
                } else {
                    i == ABSENT
                }
            })
            && self.slots.len() == flows.iter().filter(|f| is_half_open(f)).count()
    }
}
