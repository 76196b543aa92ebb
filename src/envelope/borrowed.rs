//! The borrowed view: frames decoded without copying their strings, and the
//! crate's only `unsafe` of decoding, three blocks, each saying why it is
//! sound.

use bytes::Bytes;
use prost::Message;

use super::{DecodeError, view};

/// The key and value of one encoded tags entry, as slices of it.
///
/// The entry is a slice of a frame being decoded by [`with_view`], which a
/// [`WireEnvelope`] borrows: it is decoded from a [`BorrowedFrame`] too, so
/// that its parts are static slices, with no reference count, that do not
/// outlive this call: only borrows of `entry` are returned.
#[allow(unsafe_code)]
pub(super) fn decode_tag(entry: &Bytes) -> Result<(&str, &str), DecodeError> {
    // SAFETY: see above; the slices made from `bytes` are dropped with `tag`
    // before this returns, and what is returned borrows from `entry`.
    let bytes: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(entry) };
    let tag = view::Tag::decode(BorrowedFrame(bytes))?;
    let within = |part: &Option<Bytes>| -> &[u8] {
        match part {
            // A part of the entry: the same bytes, borrowed from the entry.
            Some(part) if !part.is_empty() => {
                let start = part.as_ptr() as usize - entry.as_ptr() as usize;
                &entry[start..start + part.len()]
            }
            _ => &[],
        }
    };
    Ok((
        utf8(within(&tag.key), "tag key")?,
        utf8(within(&tag.value), "tag value")?,
    ))
}

/// Decodes one frame as a view whose `Bytes` fields are slices of `frame`,
/// and hands it to `f`.
///
/// The view is decoded from a [`BorrowedFrame`], so its `Bytes` are static
/// slices: cloning and dropping them costs nothing, where slices of a shared
/// buffer would each take and give back a reference in an atomic count. They
/// claim a `'static` lifetime they do not have, so they must not outlive this
/// call: the view is emptied before it returns (or unwinds), `f` only sees
/// it by reference for the duration of the call, and this function is private
/// to this module, whose callers only take `&str` and `&[u8]` borrows from it
/// (whose lifetime the borrow checker ties to the view).
///
/// The view is the thread's own, emptied and reused from frame to frame, so
/// that its tag list keeps its allocation.
#[allow(unsafe_code)]
pub(super) fn with_view<R>(
    frame: &[u8],
    f: impl FnOnce(Result<&view::Envelope, DecodeError>) -> R,
) -> R {
    thread_local! {
        static VIEW: std::cell::RefCell<view::Envelope> = Default::default();
    }
    /// Empties the view when dropped, so that no slice of a frame stays in it.
    struct Emptied<'v>(std::cell::RefMut<'v, view::Envelope>);
    impl Drop for Emptied<'_> {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    // SAFETY: see above; `frame` outlives every use of the slices made from it,
    // because nothing made from them is returned or stored, and the view that
    // holds them is emptied before this function returns or unwinds.
    let bytes: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(frame) };
    VIEW.with(|cell| match cell.try_borrow_mut() {
        Ok(view) => {
            let mut view = Emptied(view);
            // Empty already; cleared again in case a decode error left a part.
            view.0.clear();
            match view.0.merge(BorrowedFrame(bytes)) {
                Ok(()) => f(Ok(&view.0)),
                Err(error) => f(Err(error.into())),
            }
        }
        // `f` decodes another frame: that one gets a view of its own.
        Err(_) => {
            let view = view::Envelope::decode(BorrowedFrame(bytes)).map_err(DecodeError::from);
            let result = f(view.as_ref().map_err(Clone::clone));
            drop(view);
            result
        }
    })
}

/// A frame being decoded whose `copy_to_bytes` hands out slices of itself
/// rather than copies, with no reference count. See [`with_view`].
struct BorrowedFrame(&'static [u8]);

impl bytes::Buf for BorrowedFrame {
    #[inline]
    fn remaining(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self.0
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        self.0 = &self.0[n..];
    }

    #[inline]
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Bytes::from_static(head)
    }
}

/// The string in `bytes`. Nearly every string on the Firehose is ASCII, which
/// is checked a word at a time, inline; anything else goes through the full check.
#[inline]
#[allow(unsafe_code)]
pub(super) fn utf8<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, DecodeError> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(field))
}

pub(super) fn utf8_opt<'a>(
    bytes: &'a Option<Bytes>,
    field: &'static str,
) -> Result<Option<&'a str>, DecodeError> {
    bytes.as_deref().map(|b| utf8(b, field)).transpose()
}
