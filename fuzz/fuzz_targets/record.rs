//! SPEC 2.3–2.5: the `_mta-sts` TXT record parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::record::{is_sts_record, parse_record, select_record, RecordError};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = parse_record(data) {
        // SPEC 2.5: only an STSv1 record with a 1–32 letter/digit id parses.
        assert!(is_sts_record(data));
        assert!((1..=32).contains(&rec.id.len()));
        assert!(rec.id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    // Several records per DNS answer: NUL separates them here (it is invalid
    // inside a record anyway, SPEC 2.5).
    let records: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let sts = records.iter().filter(|r| is_sts_record(r)).count();
    match select_record(&records) {
        Ok(_) => assert_eq!(sts, 1),
        Err(RecordError::NoRecord) => assert_eq!(sts, 0),
        Err(RecordError::Multiple(n)) => assert_eq!(n, sts),
        Err(RecordError::Invalid(_)) => assert_eq!(sts, 1),
    }
});
