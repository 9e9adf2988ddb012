//! Directory enumeration: the entry buffer providers fill (spec §5).
