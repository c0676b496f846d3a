//! On-call schedules: layered rotations in an IANA time zone, overrides (in progress).
