//! Name rules of spec §6: matching with DOS wildcards, collation, validation.
