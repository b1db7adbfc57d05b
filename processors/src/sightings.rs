//! Clone sightings as they arrive: a serialised code seen too far from where it was last
//! seen to be one object.
//!
//! Each partition processor remembers, per serialised trace code (one with a serial, AI
//! `(21)`), the last sighting that had a location: its event time and position. An accepted
//! event with a location is compared with it: further apart than [`MIN_KM`] and only
//! coverable faster than [`MAX_KMH`] is a clone sighting (the processor's
//! `veritrace_clone_sightings_total`). Records are keyed by trace code, so every sighting
//! of a code reaches the same partition.
//!
//! This is the live alarm, not the record: the `clone_suspects` table of the query engine
//! finds every suspect pair in the whole log by event time; the counter compares each event
//! with the sighting that arrived before it (events that arrive out of time order are
//! compared by the absolute time between them), forgets the oldest codes first when it
//! holds more than [`PER_GENERATION`] codes twice over, and starts empty when the process
//! does.

use std::collections::HashMap;

/// Faster than this between two sightings is impossible for one object (an airliner's cruise
/// speed: a code seen across an ocean within the hour is two objects).
pub const MAX_KMH: f64 = 1_000.0;
/// Sightings closer than this are never suspect (a site's own extent, GPS error).
pub const MIN_KM: f64 = 50.0;
/// Codes remembered per generation: at most twice this many are kept (the current and the
/// previous generation), about 40 bytes each.
pub const PER_GENERATION: usize = 500_000;

/// Great-circle distance in km (haversine, Earth radius 6,371 km).
pub fn km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// Whether two sightings `km` apart and `ms` milliseconds apart (absolute) cannot be one
/// object. Under a second apart counts as a second, as in the `clone_suspects` table.
pub fn impossible(km: f64, ms: i64) -> bool {
    let hours = (ms.unsigned_abs() as f64 / 3_600_000.0).max(1.0 / 3600.0);
    km > MIN_KM && km / hours > MAX_KMH
}

/// Keys are xxh3 hashes already: no second hashing.
type Codes = HashMap<u64, Seen, std::hash::BuildHasherDefault<crate::PreHashed>>;

#[derive(Debug, Clone, Copy)]
struct Seen {
    ms: i64,
    lat: f64,
    lon: f64,
}

/// The last sighting of each recently seen serialised code (keys are 64-bit hashes of the
/// code: no allocation per event, and a collision, about n^2 / 2^65, costs at most one
/// wrong count).
#[derive(Debug)]
pub struct Sightings {
    current: Codes,
    previous: Codes,
    per_generation: usize,
}

impl Default for Sightings {
    fn default() -> Self {
        Sightings::with_generation(PER_GENERATION)
    }
}

impl Sightings {
    /// Keeps at most `2 * per_generation` codes.
    pub fn with_generation(per_generation: usize) -> Self {
        Sightings {
            current: Codes::default(),
            previous: Codes::default(),
            per_generation: per_generation.max(1),
        }
    }

    /// Records a sighting of `code` at `ms` (event time) and position; true when it is too
    /// far from the code's last sighting to be the same object. Codes without a serial are
    /// not tracked (a lot or a class is in many places at once).
    pub fn observe(&mut self, code: &str, ms: i64, lat: f64, lon: f64) -> bool {
        if !code.contains("(21)") || !lat.is_finite() || !lon.is_finite() {
            return false;
        }
        let key = xxhash_rust::xxh3::xxh3_64(code.as_bytes());
        let last = match self.current.get(&key) {
            Some(s) => Some(*s),
            None => self.previous.get(&key).copied(),
        };
        let now = Seen { ms, lat, lon };
        let suspect =
            last.is_some_and(|l| impossible(km(l.lat, l.lon, lat, lon), ms.saturating_sub(l.ms)));
        // Keep the later sighting by event time: a late arrival does not move the code back.
        let keep = match last {
            Some(l) if l.ms > ms => l,
            _ => now,
        };
        if self.current.len() >= self.per_generation && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, keep);
        suspect
    }

    /// Codes remembered now.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when no code is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "(01)09506000134352(21)A1";
    const HOUR: i64 = 3_600_000;
    // Shenzhen and Rotterdam, about 9,300 km apart.
    const SZ: (f64, f64) = (22.54, 114.06);
    const RTM: (f64, f64) = (51.92, 4.48);

    #[test]
    fn distance_is_the_great_circle() {
        let d = km(SZ.0, SZ.1, RTM.0, RTM.1);
        assert!((9_100.0..9_500.0).contains(&d), "{d}");
        assert_eq!(km(10.0, 20.0, 10.0, 20.0), 0.0);
        // Antipodes: half the circumference, not NaN.
        let half = km(0.0, 0.0, 0.0, 180.0);
        assert!((half - std::f64::consts::PI * 6371.0).abs() < 1.0, "{half}");
    }

    #[test]
    fn an_ocean_crossed_within_the_hour_is_a_clone_a_sea_voyage_is_not() {
        let mut s = Sightings::default();
        assert!(!s.observe(SERIAL, 0, SZ.0, SZ.1), "the first sighting");
        assert!(s.observe(SERIAL, HOUR, RTM.0, RTM.1), "9,300 km in an hour");
        // Thirty days later, back in Shenzhen: a ship could do it.
        assert!(!s.observe(SERIAL, 30 * 24 * HOUR, SZ.0, SZ.1));
        // Nearby sightings are never suspect, however quick.
        assert!(!s.observe(SERIAL, 30 * 24 * HOUR + 1, SZ.0 + 0.1, SZ.1));
    }

    #[test]
    fn late_arrivals_are_compared_by_absolute_time_and_do_not_move_the_code_back() {
        let mut s = Sightings::default();
        assert!(!s.observe(SERIAL, 10 * HOUR, SZ.0, SZ.1));
        // Arrives now, happened an hour before, on the other side of the world.
        assert!(s.observe(SERIAL, 9 * HOUR, RTM.0, RTM.1));
        // The code's last sighting is still Shenzhen at 10 h.
        assert!(!s.observe(SERIAL, 10 * HOUR + 1000, SZ.0, SZ.1));
    }

    #[test]
    fn lots_classes_and_positions_that_are_not_numbers_are_not_tracked() {
        let mut s = Sightings::default();
        assert!(!s.observe("(01)09506000134352(10)LOT7", 0, SZ.0, SZ.1));
        assert!(!s.observe("(01)09506000134352(10)LOT7", 1, RTM.0, RTM.1));
        assert!(!s.observe(SERIAL, 0, f64::NAN, SZ.1));
        assert!(s.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_two_generations() {
        let mut s = Sightings::with_generation(100);
        for i in 0..10_000 {
            s.observe(&format!("(01)09506000134352(21){i}"), 0, SZ.0, SZ.1);
        }
        assert!(s.len() <= 200, "{}", s.len());
        // The newest codes are still remembered.
        assert!(s.observe("(01)09506000134352(21)9999", HOUR, RTM.0, RTM.1));
    }
}
