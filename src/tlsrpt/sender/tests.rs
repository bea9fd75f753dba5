use super::*;

#[test]
fn report_ids_are_dot_atoms_unique_per_random_part() {
    let day = Day::parse("2026-12-01").unwrap();
    let id = report_id(day, 0xdead_beef);
    assert_eq!(id, "20261201.00000000deadbeef");
    assert_ne!(id, report_id(day, 0xdead_bee0));
    // Accepted by the report and the file name (SPEC 8.4).
    assert!(report::file_name("sub.example", "d.example", day, &id).is_ok());
    assert!(report::subject("sub.example", "d.example", &id).is_ok());
}

#[test]
fn a_report_is_first_due_after_its_day_within_the_spread_spec_8_4() {
    let day = Day::parse("2026-12-01").unwrap();
    let spread = Duration::from_secs(4 * 3600);
    let end = day.end_unix() + 1;
    assert_eq!(first_due(day, spread, 0.0, 0), end + SETTLE_SECS);
    assert_eq!(first_due(day, spread, 0.5, 0), end + SETTLE_SECS + 2 * 3600);
    let last = first_due(day, spread, 0.999_999, 0);
    assert!(last < end + SETTLE_SECS + 4 * 3600, "{last}");
    // Out-of-range randomness stays in range; a late start is due at once.
    assert_eq!(first_due(day, spread, f64::NAN, 0), end + SETTLE_SECS);
    assert_eq!(first_due(day, spread, 7.0, 0), end + SETTLE_SECS + 4 * 3600);
    assert_eq!(first_due(day, spread, 0.5, end + 86_400), end + 86_400);
}
