//! Picking a target among an upstream's healthy ones.
//!
//! `round_robin` rotates; `least_requests` takes the fewest in flight
//! (rotating the starting point so ties spread); `user_hash` is rendezvous
//! hashing on the caller's `sub`, so a failed target moves only its own
//! users and every proxy instance makes the same choice. When no target is
//! healthy, all of them are candidates again: a health check that is wrong
//! must not take the whole upstream down (Envoy's panic threshold).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

/// The view of a target that balancing needs.
pub trait Candidate {
    fn available(&self) -> bool;
    fn in_flight(&self) -> usize;
    fn key(&self) -> &str;
}

#[derive(Debug, Default)]
pub struct Balancer {
    next: AtomicUsize,
}

impl Balancer {
    /// Index of the chosen target; `exclude` holds targets already tried by
    /// this request. `None` only when every target is excluded.
    pub fn pick<C: Candidate>(
        &self,
        policy: Balance,
        targets: &[C],
        user: Option<&str>,
        exclude: &[usize],
    ) -> Option<usize> {
        let allowed = |i: &usize| !exclude.contains(i);
        let any_available = (0..targets.len())
            .filter(allowed)
            .any(|i| targets[i].available());
        let eligible = |i: &usize| allowed(i) && (!any_available || targets[*i].available());
        let n = targets.len();
        if n == 0 {
            return None;
        }
        match (policy, user) {
            (Balance::UserHash, Some(user)) => (0..n)
                .filter(eligible)
                .max_by_key(|&i| rendezvous_weight(user, targets[i].key())),
            (Balance::LeastRequests, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(eligible)
                    .min_by_key(|&i| targets[i].in_flight())
            }
            (Balance::RoundRobin, _) | (Balance::UserHash, None) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(eligible)
            }
        }
    }
}

/// FNV-1a over user and target: stable across processes, versions and
/// machines, which `std`'s hasher does not promise.
fn rendezvous_weight(user: &str, target: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes().chain([0xff]).chain(target.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalise (splitmix64) so targets that differ in one byte spread well.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        up: bool,
        load: usize,
        key: String,
    }
    impl Candidate for T {
        fn available(&self) -> bool {
            self.up
        }
        fn in_flight(&self) -> usize {
            self.load
        }
        fn key(&self) -> &str {
            &self.key
        }
    }
    fn targets(n: usize) -> Vec<T> {
        (0..n)
            .map(|i| T {
                up: true,
                load: 0,
                key: format!("http://10.0.0.{i}:80"),
            })
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_skips_unavailable_targets() {
        let b = Balancer::default();
        let mut ts = targets(3);
        let picks: Vec<_> = (0..6)
            .filter_map(|_| b.pick(Balance::RoundRobin, &ts, None, &[]))
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        ts[1].up = false;
        for _ in 0..6 {
            assert_ne!(b.pick(Balance::RoundRobin, &ts, None, &[]), Some(1));
        }
    }

    #[test]
    fn when_nothing_is_healthy_every_target_is_a_candidate() {
        let b = Balancer::default();
        let mut ts = targets(2);
        ts[0].up = false;
        ts[1].up = false;
        assert!(b.pick(Balance::RoundRobin, &ts, None, &[]).is_some());
        assert_eq!(b.pick(Balance::RoundRobin, &ts, None, &[0, 1]), None);
    }

    #[test]
    fn least_requests_takes_the_least_loaded() {
        let b = Balancer::default();
        let mut ts = targets(3);
        ts[0].load = 5;
        ts[1].load = 1;
        ts[2].load = 3;
        for _ in 0..5 {
            assert_eq!(b.pick(Balance::LeastRequests, &ts, None, &[]), Some(1));
        }
        assert_eq!(b.pick(Balance::LeastRequests, &ts, None, &[1]), Some(2));
    }

    #[test]
    fn user_hash_is_sticky_and_a_failure_moves_only_its_users() {
        let b = Balancer::default();
        let mut ts = targets(4);
        let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
        let before: Vec<_> = users
            .iter()
            .map(|u| b.pick(Balance::UserHash, &ts, Some(u), &[]))
            .collect();
        let again: Vec<_> = users
            .iter()
            .map(|u| b.pick(Balance::UserHash, &ts, Some(u), &[]))
            .collect();
        assert_eq!(before, again);
        for t in 0..4 {
            let share = before.iter().filter(|p| **p == Some(t)).count();
            assert!(share > 20, "target {t} got {share} of 200");
        }
        ts[2].up = false;
        for (u, old) in users.iter().zip(&before) {
            let new = b.pick(Balance::UserHash, &ts, Some(u), &[]);
            if *old != Some(2) {
                assert_eq!(new, *old, "{u} moved though its target is up");
            } else {
                assert_ne!(new, Some(2));
            }
        }
    }
}
