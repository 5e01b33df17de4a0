//! Network coordinates: Vivaldi estimates of the round-trip time between nodes.
//!
//! A leaf module (pure math and the local client): it calls nothing else in the crate. Gossip
//! feeds it through `membership::coordinate_sync`, which also publishes it to the servers.
//!
//! Every agent keeps a [`Coordinate`] — a point in 8-dimensional Euclidean space plus a
//! "height" (the node's access-link latency) and an "adjustment" (a correction learnt from
//! recent observations) — such that the [`distance`] between two nodes' coordinates estimates
//! their round-trip time. The gossip layer feeds each probe's measured RTT to the agent's
//! [`CoordinateClient`], which moves the local coordinate a little toward agreement with the
//! peer's (the Vivaldi algorithm, with the height model and adjustment window of later papers,
//! and a weak gravity toward the origin so the whole system does not drift). Agents publish
//! their coordinates to the servers, which replicate them (`state::coordinate`) for
//! `/v1/coordinate/*`, `?near=` sorting and `consul rtt`.
//!
//! Units follow Consul's: every component is in **seconds**, and the JSON shape is Consul's
//! (`{"Vec":[8 floats],"Error":…,"Adjustment":…,"Height":…}`), so coordinates read from or
//! written to a Consul-compatible client round-trip unchanged.

mod client;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{CoordinateClient, CoordinateStats};

/// Number of Euclidean dimensions (Consul's `Dimensionality`).
pub const DIMENSIONALITY: usize = 8;

/// The longest round trip an update accepts (Consul's `maxRTT`): anything slower is a
/// measurement error (a stalled process, a paused VM), not a network distance.
pub const MAX_RTT: Duration = Duration::from_secs(10);

/// Two positions closer than this (seconds) are treated as the same point.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// Why a coordinate, an update or a configuration was refused. Nothing changed when one of
/// these is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinateError {
    /// A component is NaN or infinite.
    #[error("invalid coordinate: {field} is not a finite number")]
    NotFinite {
        /// Which component (`Vec[3]`, `Error`, `Adjustment`, `Height`).
        field: String,
    },
    /// `Error` or `Height` is negative; both are magnitudes.
    #[error("invalid coordinate: {field} must not be negative (got {value})")]
    Negative {
        /// `Error` or `Height`.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// `Vec` does not have [`DIMENSIONALITY`] components.
    #[error("incompatible coordinate: Vec has {got} dimensions, expected {expected}")]
    Dimensionality {
        /// Components given.
        got: usize,
        /// Components required.
        expected: usize,
    },
    /// The measured round-trip time is longer than [`MAX_RTT`].
    #[error("round trip time {rtt:?} is out of range: it must be at most {max:?}")]
    RttOutOfRange {
        /// The RTT given.
        rtt: Duration,
        /// The largest accepted.
        max: Duration,
    },
    /// A [`CoordinateConfig`] value is unusable; the message names it.
    #[error("invalid coordinate config: {0}")]
    Config(String),
}

/// A network coordinate (Consul's `coordinate.Coordinate`). All values are in seconds except
/// `error`, which is dimensionless.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "WireCoordinate", into = "WireCoordinate")]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: [f64; DIMENSIONALITY],
    /// Confidence in the coordinate: 1.5 (no confidence) at start, shrinking as observations
    /// agree with it.
    pub error: f64,
    /// Offset learnt from recent observations; added to distances when the sum stays positive.
    pub adjustment: f64,
    /// Access-link latency: added to every distance from this node.
    pub height: f64,
}

/// Equality is bitwise per component, so it is a true equivalence (a NaN equals itself) and
/// the replicated state, which holds coordinates, can stay `Eq`. Stored coordinates are always
/// finite, where this is ordinary float equality except that `0.0 != -0.0`.
impl PartialEq for Coordinate {
    fn eq(&self, other: &Self) -> bool {
        self.vec.iter().zip(&other.vec).all(|(a, b)| a.to_bits() == b.to_bits())
            && self.error.to_bits() == other.error.to_bits()
            && self.adjustment.to_bits() == other.adjustment.to_bits()
            && self.height.to_bits() == other.height.to_bits()
    }
}

impl Eq for Coordinate {}

impl Coordinate {
    /// A new node's coordinate: the origin, maximum error, minimum height.
    pub fn new(config: &CoordinateConfig) -> Self {
        Coordinate {
            vec: [0.0; DIMENSIONALITY],
            error: config.vivaldi_error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// Checks every component is finite and `Error`/`Height` are not negative.
    pub fn validate(&self) -> Result<(), CoordinateError> {
        for (i, v) in self.vec.iter().enumerate() {
            if !v.is_finite() {
                return Err(CoordinateError::NotFinite { field: format!("Vec[{i}]") });
            }
        }
        for (field, v) in [("Error", self.error), ("Adjustment", self.adjustment), ("Height", self.height)] {
            if !v.is_finite() {
                return Err(CoordinateError::NotFinite { field: field.to_string() });
            }
        }
        for (field, value) in [("Error", self.error), ("Height", self.height)] {
            if value < 0.0 {
                return Err(CoordinateError::Negative { field, value });
            }
        }
        Ok(())
    }

    /// Whether [`Coordinate::validate`] passes.
    pub fn is_valid(&self) -> bool {
        self.validate().is_ok()
    }

    /// Estimated RTT to `other`; see [`distance`].
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        distance(self, other)
    }

    /// The Vivaldi distance in seconds without adjustments: ‖a−b‖ + both heights.
    fn raw_distance_secs(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Moves `force` seconds along the line from `other` to `self` (away from `other` for a
    /// positive force, toward it for a negative one), and grows or shrinks the height in
    /// proportion (never below `height_min`).
    fn apply_force(&self, config: &CoordinateConfig, force: f64, other: &Coordinate) -> Coordinate {
        let mut out = *self;
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec);
        for (v, u) in out.vec.iter_mut().zip(unit) {
            *v += u * force;
        }
        if mag > ZERO_THRESHOLD {
            out.height = ((out.height + other.height) * force / mag + out.height).max(config.height_min);
        }
        out
    }
}

/// Estimated round-trip time between two coordinates: ‖a−b‖ + a.height + b.height, plus both
/// adjustments when that sum stays positive (Consul's `DistanceTo`). Never panics: a result
/// that is not a finite duration (only possible with coordinates that fail
/// [`Coordinate::validate`] or are astronomically far apart) saturates to [`Duration::MAX`].
pub fn distance(a: &Coordinate, b: &Coordinate) -> Duration {
    secs_to_duration(distance_secs(a, b))
}

/// [`distance`] in seconds, as a float (infinite or NaN only for invalid coordinates).
pub fn distance_secs(a: &Coordinate, b: &Coordinate) -> f64 {
    let raw = a.raw_distance_secs(b);
    let adjusted = raw + a.adjustment + b.adjustment;
    if adjusted > 0.0 {
        adjusted
    } else {
        raw
    }
}

fn secs_to_duration(secs: f64) -> Duration {
    if secs.is_nan() {
        return Duration::MAX;
    }
    if secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

fn diff(a: &[f64; DIMENSIONALITY], b: &[f64; DIMENSIONALITY]) -> [f64; DIMENSIONALITY] {
    std::array::from_fn(|i| a[i] - b[i])
}

fn magnitude(v: &[f64; DIMENSIONALITY]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector pointing from `to` toward `from` and the distance between them. Two
/// coincident points (every node starts at the origin) get a random direction, so nodes
/// pushed apart spread out instead of moving in lock-step.
fn unit_vector_at(from: &[f64; DIMENSIONALITY], to: &[f64; DIMENSIONALITY]) -> ([f64; DIMENSIONALITY], f64) {
    use rand::Rng;
    let d = diff(from, to);
    let mag = magnitude(&d);
    if mag > ZERO_THRESHOLD {
        return (d.map(|x| x / mag), mag);
    }
    let mut rng = rand::thread_rng();
    let r: [f64; DIMENSIONALITY] = std::array::from_fn(|_| rng.gen::<f64>() - 0.5);
    let rmag = magnitude(&r);
    if rmag > ZERO_THRESHOLD {
        return (r.map(|x| x / rmag), 0.0);
    }
    let mut unit = [0.0; DIMENSIONALITY];
    unit[0] = 1.0;
    (unit, 0.0)
}

/// Tuning of the Vivaldi client; the defaults are Consul's (`serf/coordinate/config.go`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordinateConfig {
    /// Upper bound of (and starting value for) a coordinate's error (1.5).
    pub vivaldi_error_max: f64,
    /// How much one observation may change the error estimate (0.25).
    pub vivaldi_ce: f64,
    /// How much one observation may move the coordinate (0.25).
    pub vivaldi_cc: f64,
    /// Observations averaged into the adjustment term (20; 0 disables adjustments).
    pub adjustment_window_size: usize,
    /// Smallest height, seconds (10 µs).
    pub height_min: f64,
    /// RTT samples kept per peer; the median is used, which rejects outliers (3).
    pub latency_filter_size: usize,
    /// Gravity toward the origin: coordinates this far out (seconds) feel a pull equal to
    /// their distance squared over rho squared (150).
    pub gravity_rho: f64,
}

impl Default for CoordinateConfig {
    fn default() -> Self {
        CoordinateConfig {
            vivaldi_error_max: 1.5,
            vivaldi_ce: 0.25,
            vivaldi_cc: 0.25,
            adjustment_window_size: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }
}

impl CoordinateConfig {
    /// Checks the values make sense; the error names the first one that does not.
    pub fn validate(&self) -> Result<(), CoordinateError> {
        let positive = [
            ("vivaldi_error_max", self.vivaldi_error_max),
            ("vivaldi_ce", self.vivaldi_ce),
            ("vivaldi_cc", self.vivaldi_cc),
            ("height_min", self.height_min),
            ("gravity_rho", self.gravity_rho),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(CoordinateError::Config(format!("{name} must be a positive number (got {v})")));
            }
        }
        if self.latency_filter_size == 0 {
            return Err(CoordinateError::Config("latency_filter_size must be at least 1".into()));
        }
        Ok(())
    }
}

/// Consul's JSON shape. Decoding accepts any `Vec` length so a wrong one is reported as a
/// [`CoordinateError::Dimensionality`], and lower-case field names like Consul's
/// case-insensitive decoder. It checks only the dimension count: the same path decodes Raft
/// log entries and snapshots, which must never fail on a value that was encoded; values from
/// clients are validated where they enter ([`Coordinate::from_json`], the Vivaldi client, the
/// state store).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireCoordinate {
    #[serde(alias = "vec")]
    vec: Vec<f64>,
    #[serde(alias = "error")]
    error: f64,
    #[serde(alias = "adjustment")]
    adjustment: f64,
    #[serde(alias = "height")]
    height: f64,
}

impl From<Coordinate> for WireCoordinate {
    fn from(c: Coordinate) -> Self {
        WireCoordinate { vec: c.vec.to_vec(), error: c.error, adjustment: c.adjustment, height: c.height }
    }
}

impl TryFrom<WireCoordinate> for Coordinate {
    type Error = CoordinateError;

    fn try_from(w: WireCoordinate) -> Result<Self, CoordinateError> {
        let got = w.vec.len();
        let vec: [f64; DIMENSIONALITY] =
            w.vec.try_into().map_err(|_| CoordinateError::Dimensionality { got, expected: DIMENSIONALITY })?;
        Ok(Coordinate { vec, error: w.error, adjustment: w.adjustment, height: w.height })
    }
}

impl Coordinate {
    /// Decodes Consul's JSON shape and validates it (plain serde decoding checks only the
    /// dimension count). Errors name the problem (a missing or non-numeric field, a wrong
    /// dimension count, a negative height).
    pub fn from_json(v: &serde_json::Value) -> Result<Coordinate, String> {
        let obj = v.as_object().ok_or_else(|| "Coord: expected an object".to_string())?;
        let field = |name: &str| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let number = |name: &str| -> Result<f64, String> {
            match field(name) {
                None | Some(serde_json::Value::Null) => Ok(0.0),
                Some(v) => v.as_f64().ok_or_else(|| format!("Coord.{name}: expected a number, got {v}")),
            }
        };
        let vec = match field("Vec") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| x.as_f64().ok_or_else(|| format!("Coord.Vec[{i}]: expected a number, got {x}")))
                .collect::<Result<Vec<f64>, String>>()?,
            None | Some(serde_json::Value::Null) => return Err("Coord.Vec: missing".into()),
            Some(other) => return Err(format!("Coord.Vec: expected an array of numbers, got {other}")),
        };
        let wire = WireCoordinate {
            vec,
            error: number("Error")?,
            adjustment: number("Adjustment")?,
            height: number("Height")?,
        };
        let c = Coordinate::try_from(wire).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(vec: &[f64], height: f64, adjustment: f64) -> Coordinate {
        let mut c = Coordinate::new(&CoordinateConfig::default());
        c.vec[..vec.len()].copy_from_slice(vec);
        c.height = height;
        c.adjustment = adjustment;
        c
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn distance_is_norm_plus_heights() {
        let a = at(&[0.003, 0.0, 0.004], 0.0, 0.0);
        let b = at(&[0.0; 3], 0.0, 0.0);
        assert!((ms(distance(&a, &b)) - 5.0).abs() < 1e-6);
        let a = at(&[0.003, 0.0, 0.004], 0.001, 0.0);
        let b = at(&[0.0; 3], 0.002, 0.0);
        assert!((ms(distance(&a, &b)) - 8.0).abs() < 1e-6);
        // Symmetric.
        assert_eq!(distance(&a, &b), distance(&b, &a));
        // Same point, zero height: zero.
        let z = at(&[], 0.0, 0.0);
        assert_eq!(distance(&z, &z), Duration::ZERO);
    }

    #[test]
    fn adjustments_apply_only_while_the_sum_stays_positive() {
        let a = at(&[0.010], 0.0, 0.002);
        let b = at(&[0.0], 0.0, -0.001);
        assert!((ms(distance(&a, &b)) - 11.0).abs() < 1e-6);
        // Adjustments that would make it negative are ignored.
        let a = at(&[0.010], 0.0, -0.006);
        let b = at(&[0.0], 0.0, -0.006);
        assert!((ms(distance(&a, &b)) - 10.0).abs() < 1e-6);
        // Exactly zero is not positive either: the raw distance is used.
        let a = at(&[0.010], 0.0, -0.005);
        let b = at(&[0.0], 0.0, -0.005);
        assert!((ms(distance(&a, &b)) - 10.0).abs() < 1e-6);
    }

    #[test]
    fn distance_never_panics() {
        let mut a = at(&[], 0.0, 0.0);
        let b = at(&[], 0.0, 0.0);
        a.vec[0] = f64::NAN;
        assert_eq!(distance(&a, &b), Duration::MAX);
        a.vec[0] = f64::INFINITY;
        assert_eq!(distance(&a, &b), Duration::MAX);
        a.vec[0] = 1e300;
        a.vec[1] = 1e300;
        assert_eq!(distance(&a, &b), Duration::MAX);
        a.vec = [0.0; DIMENSIONALITY];
        a.height = -5.0;
        assert_eq!(distance(&a, &b), Duration::ZERO);
    }

    #[test]
    fn json_shape_is_consuls() {
        let c = at(&[0.001, -0.002], 1e-5, 0.25);
        let v = serde_json::to_value(c).expect("encode");
        let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4);
        for k in ["Vec", "Error", "Adjustment", "Height"] {
            assert!(keys.contains(&k), "{k} missing from {v}");
        }
        assert_eq!(v["Vec"].as_array().map(Vec::len), Some(8));
        assert_eq!(v["Vec"][1], -0.002);
        assert_eq!(v["Error"], 1.5);
        let back: Coordinate = serde_json::from_value(v).expect("decode");
        assert_eq!(back, c);
        let consul = r#"{"Adjustment":0,"Error":1.5,"Height":1e-05,"Vec":[0,0,0,0,0,0,0,0]}"#;
        let c: Coordinate = serde_json::from_str(consul).expect("decode Consul's");
        assert_eq!(c, Coordinate::new(&CoordinateConfig::default()));
        // Postcard (snapshots, Raft log) round-trips too.
        let bin = postcard::to_allocvec(&c).expect("postcard");
        assert_eq!(postcard::from_bytes::<Coordinate>(&bin).expect("postcard decode"), c);
    }

    #[test]
    fn garbage_is_rejected() {
        let bad_dims = r#"{"Vec":[0,0,0],"Error":1.5,"Adjustment":0,"Height":0}"#;
        assert!(serde_json::from_str::<Coordinate>(bad_dims).is_err());
        // Serde decoding (also used for the Raft log) checks dimensions only.
        let neg = r#"{"Vec":[0,0,0,0,0,0,0,0],"Error":-1,"Adjustment":0,"Height":0}"#;
        assert!(serde_json::from_str::<Coordinate>(neg).is_ok_and(|c| !c.is_valid()));
        let v: serde_json::Value = serde_json::from_str(bad_dims).expect("json");
        let e = Coordinate::from_json(&v).expect_err("3 dims");
        assert!(e.contains("3 dimensions"), "{e}");
        for (body, needle) in [
            (r#"{"Vec":[0,0,0,0,0,0,0,"x"],"Error":1.5}"#, "Vec[7]"),
            (r#"{"Error":1.5}"#, "Vec: missing"),
            (r#"{"Vec":5}"#, "array"),
            (r#"{"Vec":[0,0,0,0,0,0,0,0],"Error":-1}"#, "Error must not be negative"),
            (r#"{"Vec":[0,0,0,0,0,0,0,0],"Height":-1}"#, "Height must not be negative"),
            (r#"{"Vec":[0,0,0,0,0,0,0,0],"Height":"tall"}"#, "Coord.Height"),
            (r#"[1,2]"#, "expected an object"),
            (r#"{"Vec":[0,0,0,0,0,0,0,1e400]}"#, ""),
        ] {
            let v: Result<serde_json::Value, _> = serde_json::from_str(body);
            let Ok(v) = v else { continue }; // 1e400 is already refused by the JSON parser
            let e = Coordinate::from_json(&v).expect_err(body);
            assert!(e.contains(needle), "{body}: {e}");
        }
        // Case-insensitive field names, like Consul's decoder.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"vec":[0,0,0,0,0,0,0,0.5],"error":0.2,"height":0.001}"#).expect("json");
        let c = Coordinate::from_json(&v).expect("lower case");
        assert_eq!((c.vec[7], c.error, c.height), (0.5, 0.2, 0.001));
        // NaN directly in a value.
        let mut c = Coordinate::new(&CoordinateConfig::default());
        c.adjustment = f64::NAN;
        assert!(matches!(c.validate(), Err(CoordinateError::NotFinite { field }) if field == "Adjustment"));
        c.adjustment = 0.0;
        c.vec[4] = f64::NEG_INFINITY;
        assert!(matches!(c.validate(), Err(CoordinateError::NotFinite { field }) if field == "Vec[4]"));
    }

    #[test]
    fn config_validation_names_the_field() {
        assert!(CoordinateConfig::default().validate().is_ok());
        let c = CoordinateConfig { vivaldi_cc: f64::NAN, ..CoordinateConfig::default() };
        assert!(c.validate().expect_err("nan").to_string().contains("vivaldi_cc"));
        let c = CoordinateConfig { latency_filter_size: 0, ..CoordinateConfig::default() };
        assert!(c.validate().expect_err("zero").to_string().contains("latency_filter_size"));
    }
}
