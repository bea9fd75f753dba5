//! SPEC 1.1, 1.4: the netstring decoder, on whatever a client sends.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::socketmap::netstring::{decode, decode_frame, encode, FrameError};
use mtastsd_fuzz::socketmap::MAX_REQUEST;

fuzz_target!(|data: &[u8]| {
    // Pipelined frames, as the server loop takes them off its input buffer.
    let mut rest = data;
    let mut buf = BytesMut::from(data);
    loop {
        let framed = decode_frame(rest, MAX_REQUEST);
        // The copying decoder agrees with the borrowing one.
        let taken = decode(&mut buf, MAX_REQUEST);
        match (framed, taken) {
            (Ok(Some(frame)), Ok(Some(payload))) => {
                // SPEC 1.4: never more than the cap; the frame is within the input,
                // ends with ',' and is exactly the netstring of its payload.
                assert!(frame.payload.len() <= MAX_REQUEST);
                assert!(frame.len <= rest.len());
                assert_eq!(rest[frame.len - 1], b',');
                assert_eq!(&rest[frame.payload.clone()], &payload[..]);
                // Leading zeros in the length are read leniently ("003:" is 3):
                // compare with them taken off.
                let mut again = BytesMut::new();
                encode(&payload, &mut again);
                let digits = frame.payload.start - 1;
                let zeros = rest[..digits].iter().take_while(|&&b| b == b'0').count();
                let zeros = zeros.min(digits - 1);
                assert_eq!(&again[..], &rest[zeros..frame.len]);
                rest = &rest[frame.len..];
                assert_eq!(&buf[..], rest);
            }
            (Ok(None), Ok(None)) => {
                // "Need more bytes" only for a true prefix of an acceptable frame:
                // at most 5 digits, then maybe ':' and part of the payload.
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                assert!(digits <= 5);
                assert!(rest.len() <= 5 + 1 + MAX_REQUEST);
                assert!(rest[digits..].is_empty() || rest[digits] == b':');
                break;
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b);
                if let FrameError::TooLong(n) = a {
                    assert!(
                        n > MAX_REQUEST
                            || rest.iter().take_while(|b| b.is_ascii_digit()).count() > 5
                    );
                }
                break;
            }
            (a, b) => panic!("decoders disagree: {a:?} vs {b:?}"),
        }
    }
});
