//! The borrowed view: frames decoded without copying their strings, and the
//! crate's only `unsafe` of decoding, two blocks, each saying why it is
//! sound.

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::Bytes;
use prost::Message;

use super::{DecodeError, view};

/// The key and value of one encoded tags entry (`key` = 1, `value` = 2,
/// strings), as slices of it. The entry is one of the static slices of a
/// message decoded by [`with_borrowed`].
pub(super) fn decode_tag(entry: &Bytes) -> Result<(&str, &str), DecodeError> {
    let tag: view::Tag = decode_part(entry)?;
    let part = |part: &Option<Bytes>| within(entry, part.as_deref().unwrap_or_default());
    Ok((
        utf8(part(&tag.key), "tag key")?,
        utf8(part(&tag.value), "tag value")?,
    ))
}

/// Decodes one frame as a view whose `Bytes` fields are slices of `frame`,
/// and hands it to `f`.
pub(super) fn with_view<R>(
    frame: &[u8],
    f: impl FnOnce(Result<&view::Envelope, DecodeError>) -> R,
) -> R {
    thread_local! {
        static VIEW: RefCell<view::Envelope> = Default::default();
    }
    with_borrowed(&VIEW, frame, |view| f(view.map(|v| &*v)))
}

/// Decodes `frame` as the message `M` whose `Bytes` fields are slices of
/// `frame`, in the thread's own `M` held by `cell`, and hands it to `f`.
///
/// The message is decoded from a [`BorrowedFrame`], so its `Bytes` are static
/// slices: cloning and dropping them costs nothing, where slices of a shared
/// buffer would each take and give back a reference in an atomic count. They
/// claim a `'static` lifetime they do not have, so they must not outlive this
/// call: the message is emptied before it returns (or unwinds), `f` only sees
/// it by reference for the duration of the call, and this function is private
/// to the envelope module, whose code only takes `&str` and `&[u8]` borrows
/// from it (whose lifetime the borrow checker ties to the message), reorders
/// its `Bytes` within it, or decodes parts of them with [`decode_part`].
///
/// The message is emptied and reused from frame to frame, so that its lists
/// keep their allocation.
#[allow(unsafe_code)]
pub(super) fn with_borrowed<M: Message + Default + 'static, R>(
    cell: &'static LocalKey<RefCell<M>>,
    frame: &[u8],
    f: impl FnOnce(Result<&mut M, DecodeError>) -> R,
) -> R {
    /// Empties the message when dropped, so that no slice of a frame stays in it.
    struct Emptied<'v, M: Message>(std::cell::RefMut<'v, M>);
    impl<M: Message> Drop for Emptied<'_, M> {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    // SAFETY: see above; `frame` outlives every use of the slices made from it,
    // because nothing made from them is returned or stored, and the message
    // that holds them is emptied before this function returns or unwinds.
    let bytes: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(frame) };
    cell.with(|cell| match cell.try_borrow_mut() {
        Ok(message) => {
            let mut message = Emptied(message);
            // Empty already; cleared again in case a decode error left a part.
            message.0.clear();
            match message.0.merge(BorrowedFrame(bytes)) {
                Ok(()) => f(Ok(&mut message.0)),
                Err(error) => f(Err(error.into())),
            }
        }
        // `f` decodes another frame of the same kind: that one gets a message of its own.
        Err(_) => {
            let mut message = M::decode(BorrowedFrame(bytes)).map_err(DecodeError::from);
            let result = f(message.as_mut().map_err(|e| e.clone()));
            drop(message);
            result
        }
    })
}

/// Decodes a part of a message decoded by [`with_borrowed`] (a map entry,
/// say) as the message `M`. `part` is one of that message's static slices,
/// so that what `M` holds are static slices of the same frame, with the
/// same rule: only borrows of them, through [`within`], are used.
pub(super) fn decode_part<M: Message + Default>(part: &Bytes) -> Result<M, DecodeError> {
    Ok(M::decode(part.clone())?)
}

/// The bytes of `inner` as a borrow of `outer`, which holds them: what a
/// part decoded by [`decode_part`] holds, borrowed from what it was decoded
/// from. Empty when `inner` is empty or not within `outer`.
pub(super) fn within<'o>(outer: &'o [u8], inner: &[u8]) -> &'o [u8] {
    let start = (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize);
    match start.checked_add(inner.len()) {
        Some(end) if !inner.is_empty() && end <= outer.len() => &outer[start..end],
        _ => &[],
    }
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
