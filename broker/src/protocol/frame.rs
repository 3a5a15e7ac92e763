//! Kafka framing: a 4-byte big-endian size, then the request. Check the
//! size before reading the body, so a lying length can never make the broker
//! allocate more than the configured request limit.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("request of {size} bytes exceeds the limit of {max} bytes (raise --max-request-bytes if this client is legitimate)")]
    TooLarge { size: usize, max: usize },
    #[error("negative request size {size}")]
    NegativeSize { size: i32 },
    #[error("request too short for a header ({len} bytes)")]
    TooShort { len: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("malformed {api:?} v{version} request header: {reason}")]
    BadHeader {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// If `buf` holds a whole frame, the length of its body; `None` if more bytes are needed.
pub fn check(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::NegativeSize { size });
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok((buf.len() >= 4 + size).then_some(size))
}

/// Split one complete frame's body off `buf` (after [`check`] returned `Some`).
pub fn take(buf: &mut BytesMut, size: usize) -> Bytes {
    buf.advance(4);
    buf.split_to(size).freeze()
}

/// A request with its header parsed and its body left undecoded.
#[derive(Debug)]
pub struct RawRequest {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Peek api key, version and correlation id (present in every header version).
pub fn peek(frame: &[u8]) -> Result<(i16, i16, i32), FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort { len: frame.len() });
    }
    Ok((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Parse the request header; the body stays as bytes for the handler's decoder.
pub fn parse_header(mut frame: Bytes) -> Result<RawRequest, FrameError> {
    let (key, version, correlation_id) = peek(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey {
        api_key: key,
        correlation_id,
    })?;
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| FrameError::BadHeader {
            api: api_key,
            version,
            reason: e.to_string(),
        })?;
    Ok(RawRequest {
        api_key,
        header,
        body: frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_before_reading() {
        assert_eq!(check(&[0, 0], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 5, 1, 2], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 2, 1, 2], 100), Ok(Some(2)));
        assert_eq!(
            check(&[0x7f, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLarge {
                size: i32::MAX as usize,
                max: 100
            })
        );
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::NegativeSize { size: -1 })
        );
    }

    #[test]
    fn headers_parse_or_fail_cleanly() {
        assert!(matches!(
            parse_header(Bytes::from_static(&[0, 18])),
            Err(FrameError::TooShort { .. })
        ));
        assert!(matches!(
            parse_header(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 7])),
            Err(FrameError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 7
            })
        ));
        // ApiVersions v3, correlation 9, client id "c", empty tagged fields.
        let frame = Bytes::from_static(&[0, 18, 0, 3, 0, 0, 0, 9, 0, 1, b'c', 0, 0xAA]);
        let r = parse_header(frame).unwrap();
        assert_eq!(r.api_key, ApiKey::ApiVersions);
        assert_eq!(r.header.correlation_id, 9);
        assert_eq!(&r.body[..], &[0xAA]);
        // A header cut inside the client id is an error, not a panic.
        assert!(parse_header(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 9, b'x'])).is_err());
    }
}
