//! A one-shot cancellation slot: the kernel channel fires it when the client's
//! request is interrupted; the virtualizer arms it with "cancel this command".

use std::sync::{Arc, Mutex};

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    fired: bool,
    hook: Option<Hook>,
}

/// Shared between the request's interrupt hook and the code that pends it.
/// Invariant: the armed hook runs at most once, and it runs if and only if the
/// slot fires while (or after) it is armed.
#[derive(Clone, Default)]
pub struct CancelSlot(Arc<Mutex<State>>);

impl std::fmt::Debug for CancelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelSlot")
            .field("fired", &self.is_fired())
            .finish()
    }
}

impl CancelSlot {
    /// A new, unarmed, unfired slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fire: run the armed hook now, or remember so that [`CancelSlot::arm`] runs
    /// it at once.
    pub fn fire(&self) {
        let hook = {
            let mut s = self.0.lock().expect("cancel slot lock");
            s.fired = true;
            s.hook.take()
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    /// Arm with `hook`, replacing an earlier one. Runs it at once if already fired.
    pub fn arm(&self, hook: impl FnOnce() + Send + 'static) {
        let run_now = {
            let mut s = self.0.lock().expect("cancel slot lock");
            if s.fired {
                true
            } else {
                s.hook = Some(Box::new(hook));
                return;
            }
        };
        if run_now {
            hook();
        }
    }

    /// Drop the armed hook (the work it would cancel is done).
    pub fn disarm(&self) {
        self.0.lock().expect("cancel slot lock").hook = None;
    }

    /// Whether the slot fired.
    pub fn is_fired(&self) -> bool {
        self.0.lock().expect("cancel slot lock").fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fire_then_arm_runs_once() {
        let slot = CancelSlot::new();
        let n = Arc::new(AtomicUsize::new(0));
        slot.fire();
        let n2 = n.clone();
        slot.arm(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        slot.fire();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn arm_then_fire_runs_once_and_disarm_prevents() {
        let slot = CancelSlot::new();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        slot.arm(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        slot.fire();
        slot.fire();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let other = CancelSlot::new();
        let n3 = n.clone();
        other.arm(move || {
            n3.fetch_add(1, Ordering::SeqCst);
        });
        other.disarm();
        other.fire();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
