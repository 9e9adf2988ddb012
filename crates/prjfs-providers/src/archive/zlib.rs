//! A safe wrapper over the C zlib inflate stream (`libz-sys`), for the three
//! calls gzip resume points need and `flate2` does not expose: `inflate` with
//! `Z_BLOCK` (stop at each deflate block boundary), `inflatePrime` (resume at a
//! bit offset) and `inflateSetDictionary` on a raw stream (restore the 32 KiB
//! window).
//!
//! Invariant: the `z_stream` is boxed (zlib keeps a pointer back to it in its
//! state, so it must not move) and initialised before any other call; its
//! `next_in`/`next_out` pointers are set from slices for the length of one
//! [`Inflater::inflate`] call only and cleared before it returns.

use std::os::raw::{c_int, c_uint, c_void};

use libz_sys as z;

/// What one [`Inflater::inflate`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Output bytes produced.
    pub produced: usize,
    /// zlib's return code (`Z_OK`, `Z_STREAM_END`, `Z_BUF_ERROR`, ...).
    pub code: c_int,
    /// zlib's `data_type` after the call (bit 7: at a block boundary, bit 6:
    /// in the last block, bits 0-2: unused bits of the last input byte).
    pub data_type: c_int,
}

impl Step {
    /// The stream stopped right after a block (or the gzip header) and is not
    /// inside the last block: a place to resume from.
    pub fn at_block_boundary(&self) -> bool {
        self.data_type & 128 != 0 && self.data_type & 64 == 0
    }
}

/// An inflate stream: gzip-wrapped (header and CRC checked by zlib) or raw.
pub struct Inflater {
    stream: Box<z::z_stream>,
}

// SAFETY: the stream is only used through `&mut self`; zlib's state has no
// thread affinity.
unsafe impl Send for Inflater {}

extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    // SAFETY: calloc with any sizes is sound; zlib checks for NULL.
    unsafe { libc::calloc(items as usize, size as usize) }
}

extern "C" fn zfree(_opaque: *mut c_void, ptr: *mut c_void) {
    // SAFETY: `ptr` came from `zalloc` (calloc) or is NULL.
    unsafe { libc::free(ptr) }
}

impl Inflater {
    /// A stream for gzip data (`gzip: true`, header parsed by zlib, member
    /// trailers checked) or raw deflate (`gzip: false`).
    pub fn new(gzip: bool) -> std::io::Result<Self> {
        let mut stream = Box::new(z::z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        let bits = if gzip { 31 } else { -15 };
        // SAFETY: `stream` is a valid, boxed z_stream with allocators set; the
        // version and size are those of the linked zlib's header.
        let code = unsafe {
            z::inflateInit2_(
                &mut *stream,
                bits,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        if code != z::Z_OK {
            return Err(std::io::Error::other(format!(
                "inflateInit2 failed ({code})"
            )));
        }
        Ok(Self { stream })
    }

    /// Inflate from `input` into `output`, stopping at the next block boundary
    /// when `block` is set (`Z_BLOCK`), else as far as the buffers allow.
    pub fn inflate(&mut self, input: &[u8], output: &mut [u8], block: bool) -> Step {
        let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
        let avail_out = output.len().min(c_uint::MAX as usize) as c_uint;
        self.stream.next_in = input.as_ptr() as *mut u8;
        self.stream.avail_in = avail_in;
        self.stream.next_out = output.as_mut_ptr();
        self.stream.avail_out = avail_out;
        let flush = if block { z::Z_BLOCK } else { z::Z_NO_FLUSH };
        // SAFETY: the stream was initialised; next_in/next_out point into live
        // slices of at least avail_in/avail_out bytes; zlib does not write
        // through next_in.
        let code = unsafe { z::inflate(&mut *self.stream, flush) };
        let step = Step {
            consumed: (avail_in - self.stream.avail_in) as usize,
            produced: (avail_out - self.stream.avail_out) as usize,
            code,
            data_type: self.stream.data_type,
        };
        self.stream.next_in = std::ptr::null_mut();
        self.stream.avail_in = 0;
        self.stream.next_out = std::ptr::null_mut();
        self.stream.avail_out = 0;
        step
    }

    /// Feed the `bits` high bits of `byte` first (resume in the middle of a byte).
    pub fn prime(&mut self, bits: u8, byte: u8) -> std::io::Result<()> {
        if bits == 0 {
            return Ok(());
        }
        let value = c_int::from(byte >> (8 - bits));
        // SAFETY: initialised stream; bits ≤ 7.
        let code = unsafe { z::inflatePrime(&mut *self.stream, c_int::from(bits), value) };
        check(code, "inflatePrime")
    }

    /// Set the window (the 32 KiB of output before the resume point) of a raw stream.
    pub fn set_dictionary(&mut self, window: &[u8]) -> std::io::Result<()> {
        if window.is_empty() {
            return Ok(());
        }
        // SAFETY: initialised raw stream; the pointer and length describe `window`,
        // which zlib copies and does not keep.
        let code = unsafe {
            z::inflateSetDictionary(&mut *self.stream, window.as_ptr(), window.len() as c_uint)
        };
        check(code, "inflateSetDictionary")
    }

    /// Start over for the next gzip member (keeps the wrapper kind).
    pub fn reset(&mut self) -> std::io::Result<()> {
        // SAFETY: initialised stream.
        let code = unsafe { z::inflateReset(&mut *self.stream) };
        check(code, "inflateReset")
    }

    /// zlib's message for the last error, if any.
    pub fn message(&self) -> String {
        if self.stream.msg.is_null() {
            return String::new();
        }
        // SAFETY: zlib sets `msg` to a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(self.stream.msg) }
            .to_string_lossy()
            .into_owned()
    }
}

fn check(code: c_int, what: &str) -> std::io::Result<()> {
    if code == z::Z_OK {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("{what} failed ({code})")))
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: initialised stream, ended once.
        unsafe {
            z::inflateEnd(&mut *self.stream);
        }
    }
}

/// Return codes callers match on.
pub use z::{Z_BUF_ERROR, Z_DATA_ERROR, Z_OK, Z_STREAM_END};
