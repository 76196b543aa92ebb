//! The hex test vectors of the protocol brief (§1.11), for the unit tests,
//! the integration tests and the benchmarks alike.

/// A ValueMetric `numCPUS` = 4 `count` from rep, with BOSH fields and a
/// `source_id` tag.
pub const VALUE_METRIC: &str = "0a037265701006308080a8b1e39fe7cb174a190a076e756d435055531100000000000010401a05636f756e746a026366720a646965676f2d63656c6c7a056964782d3182010831302e302e302e358a01100a09736f757263655f69641203726570";
/// A ContainerMetric of an app instance, with an `app_name` tag.
pub const CONTAINER_METRIC: &str = "0a037265701009308080a8b1e39fe7cb1762470a2466343761633130622d353863632d343337322d613536372d306530326232633364343739100019000000000000f83f208080803228808080643080808080043880808080048a01110a086170705f6e616d6512056d79617070";
/// A CounterEvent `requests` from gorouter, delta 5 and total 1234.
pub const COUNTER_EVENT: &str =
    "0a08676f726f757465721007308080a8b1e39fe7cb17520f0a087265717565737473100518d209";

/// An encoded tags entry as the envelope's field 17.
pub fn entry_field(entry: &[u8]) -> Vec<u8> {
    let mut field = vec![0x8a, 0x01, entry.len() as u8];
    field.extend_from_slice(entry);
    field
}

/// A tag as the envelope's field 17, its key and value given as bytes.
pub fn tag_field(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut entry = vec![0x0a, key.len() as u8];
    entry.extend_from_slice(key);
    entry.extend_from_slice(&[0x12, value.len() as u8]);
    entry.extend_from_slice(value);
    entry_field(&entry)
}

/// Decodes a hex vector.
pub fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
