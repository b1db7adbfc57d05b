//! Clone detection: the same serialised code seen in two places in an impossible time.
//!
//! `clone_suspects` is a view over `events`: for each serialised code (an SGTIN, `(21)` in
//! the code), each pair of consecutive observations with a location whose great-circle
//! distance (haversine, Earth radius 6,371 km) is over [`MIN_KM`] and could only be covered
//! faster than [`MAX_KMH`]: two physical objects carry the code, so at least one is a copy.
//! The view reads the caller's own `events` (its scope), so a participant sees suspects among
//! the events it may see.

use std::sync::Arc;

use datafusion::datasource::TableProvider;
use datafusion::execution::context::SessionContext;

/// The thresholds, shared with the processors' live counter
/// (`veritrace_clone_sightings_total`, [`veritrace_processors::sightings`]).
pub use veritrace_processors::sightings::{MAX_KMH, MIN_KM};

/// The view's SQL.
pub fn sql() -> String {
    format!(
        "WITH seen AS (\
           SELECT trace_code, event_id, event_time, event_type, site, lat, lon, \
             lag(event_id) OVER w AS first_event, lag(event_time) OVER w AS first_time, \
             lag(site) OVER w AS first_site, lag(lat) OVER w AS first_lat, \
             lag(lon) OVER w AS first_lon \
           FROM events \
           WHERE lat IS NOT NULL AND lon IS NOT NULL AND trace_code LIKE '%(21)%' \
           WINDOW w AS (PARTITION BY trace_code ORDER BY event_time, event_id)), \
         measured AS (\
           SELECT *, 2 * 6371 * asin(sqrt(\
               power(sin(radians(lat - first_lat) / 2), 2) + \
               cos(radians(first_lat)) * cos(radians(lat)) * \
               power(sin(radians(lon - first_lon) / 2), 2))) AS km, \
             (CAST(event_time AS BIGINT) - CAST(first_time AS BIGINT)) / 3600000.0 AS hours \
           FROM seen WHERE first_event IS NOT NULL) \
         SELECT trace_code, first_event, event_id AS second_event, first_time, \
           event_time AS second_time, first_site, site AS second_site, \
           round(km, 1) AS km, round(hours, 3) AS hours, \
           round(km / greatest(hours, 1.0 / 3600), 0) AS kmh \
         FROM measured \
         WHERE km > {MIN_KM} AND km / greatest(hours, 1.0 / 3600) > {MAX_KMH}"
    )
}

/// The view, planned against `ctx`'s `events` table.
pub async fn view(ctx: &SessionContext) -> crate::Result<Arc<dyn TableProvider>> {
    Ok(ctx.sql(&sql()).await?.into_view())
}
