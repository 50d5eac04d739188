//! CashAddr (Bitcoin Cash, eCash): `prefix:payload`, base32 with a 40-bit BCH checksum
//! over the prefix and the payload, as specified by the Bitcoin Cash "cashaddr" spec.

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// The address type in the version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CashAddrType {
    P2pkh,
    P2sh,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CashAddrError {
    #[error("mixes upper and lower case")]
    MixedCase,
    #[error("has the prefix {found:?}, but this network uses {expected:?}")]
    WrongPrefix { found: String, expected: String },
    #[error("contains a character that is not in the CashAddr alphabet")]
    BadCharacter,
    #[error("checksum does not match (a typo?)")]
    Checksum,
    #[error("has an unsupported version byte or hash length")]
    Version,
    #[error("is too short")]
    TooShort,
}

fn polymod(values: impl Iterator<Item = u8>) -> u64 {
    let mut c: u64 = 1;
    for d in values {
        let c0 = (c >> 35) as u8;
        c = ((c & 0x07_ffff_ffff) << 5) ^ d as u64;
        for (bit, k) in [0x98f2bc8e61u64, 0x79b76d99e2, 0xf33e5fb3c4, 0xae2eabe2a8, 0x1e4f43e470].iter().enumerate() {
            if c0 & (1 << bit) != 0 {
                c ^= k;
            }
        }
    }
    c ^ 1
}

fn prefix_values(prefix: &str) -> impl Iterator<Item = u8> + '_ {
    prefix.bytes().map(|b| b & 0x1f).chain(std::iter::once(0))
}

/// Decodes `address` (with or without its prefix) for a network whose prefix is `prefix`.
pub fn decode(address: &str, prefix: &str) -> Result<(CashAddrType, [u8; 20]), CashAddrError> {
    let has_lower = address.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = address.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(CashAddrError::MixedCase);
    }
    let address = address.to_ascii_lowercase();
    let payload = match address.split_once(':') {
        Some((p, rest)) => {
            if p != prefix {
                return Err(CashAddrError::WrongPrefix { found: p.to_string(), expected: prefix.to_string() });
            }
            rest
        }
        None => address.as_str(),
    };
    let values: Vec<u8> = payload
        .bytes()
        .map(|b| CHARSET.iter().position(|c| *c == b).map(|p| p as u8))
        .collect::<Option<_>>()
        .ok_or(CashAddrError::BadCharacter)?;
    if values.len() < 8 + 1 {
        return Err(CashAddrError::TooShort);
    }
    if polymod(prefix_values(prefix).chain(values.iter().copied())) != 0 {
        return Err(CashAddrError::Checksum);
    }
    let data = &values[..values.len() - 8];
    // 5-bit groups to bytes; leftover bits must be zero padding.
    let mut bytes = Vec::with_capacity(data.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in data {
        acc = (acc << 5) | *v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    if bits >= 5 || (acc & ((1 << bits) - 1)) != 0 {
        return Err(CashAddrError::Version);
    }
    let (version, hash) = bytes.split_first().ok_or(CashAddrError::TooShort)?;
    // Version byte: reserved bit 7, type in bits 3-6, size code in bits 0-2 (0 = 160 bits).
    if version & 0x80 != 0 || version & 0x07 != 0 || hash.len() != 20 {
        return Err(CashAddrError::Version);
    }
    let kind = match (version >> 3) & 0x0f {
        0 => CashAddrType::P2pkh,
        1 => CashAddrType::P2sh,
        _ => return Err(CashAddrError::Version),
    };
    Ok((kind, hash.try_into().expect("20 bytes checked")))
}

/// Encodes a 160-bit hash; used by the tests and by anything that shows addresses.
pub fn encode(prefix: &str, kind: CashAddrType, hash: &[u8; 20]) -> String {
    let version = match kind {
        CashAddrType::P2pkh => 0u8,
        CashAddrType::P2sh => 1 << 3,
    };
    let mut bytes = vec![version];
    bytes.extend_from_slice(hash);
    let mut values = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            values.push(((acc >> bits) & 0x1f) as u8);
        }
    }
    if bits > 0 {
        values.push(((acc << (5 - bits)) & 0x1f) as u8);
    }
    let checksum = polymod(prefix_values(prefix).chain(values.iter().copied()).chain([0u8; 8]));
    for i in 0..8 {
        values.push(((checksum >> (5 * (7 - i))) & 0x1f) as u8);
    }
    let body: String = values.iter().map(|v| CHARSET[*v as usize] as char).collect();
    format!("{prefix}:{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> [u8; 20] {
        let v: Vec<u8> = (0..20).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
        v.try_into().unwrap()
    }

    // Vectors from the CashAddr specification (the same hashes as the legacy addresses
    // 1BpEi6DfDAUFd7GtittLSdBeYJvcoaVggu, 3CWFddi6m4ndiGyKqzYvsFYagqDLPVMTzC and
    // 1KXrWXciRDZUpQwQmuM1DbwsKDLYAYsVLR).
    const VECTORS: [(&str, CashAddrType, &str); 3] = [
        (
            "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a",
            CashAddrType::P2pkh,
            "76a04053bda0a88bda5177b86a15c3b29f559873",
        ),
        (
            "bitcoincash:ppm2qsznhks23z7629mms6s4cwef74vcwvn0h829pq",
            CashAddrType::P2sh,
            "76a04053bda0a88bda5177b86a15c3b29f559873",
        ),
        (
            "bitcoincash:qr95sy3j9xwd2ap32xkykttr4cvcu7as4y0qverfuy",
            CashAddrType::P2pkh,
            "cb481232299cd5743151ac4b2d63ae198e7bb0a9",
        ),
    ];

    #[test]
    fn decodes_and_encodes_the_spec_vectors() {
        for (addr, kind, hash) in VECTORS {
            assert_eq!(decode(addr, "bitcoincash").unwrap(), (kind, h(hash)), "{addr}");
            assert_eq!(encode("bitcoincash", kind, &h(hash)), addr);
            // Without the prefix, and in upper case, it is the same address.
            let bare = addr.split_once(':').unwrap().1;
            assert_eq!(decode(bare, "bitcoincash").unwrap().1, h(hash));
            assert_eq!(decode(&addr.to_ascii_uppercase(), "bitcoincash").unwrap().1, h(hash));
        }
    }

    #[test]
    fn the_checksum_covers_the_prefix_and_catches_typos() {
        let (addr, _, _) = VECTORS[0];
        let bare = addr.split_once(':').unwrap().1;
        assert_eq!(decode(bare, "bchtest"), Err(CashAddrError::Checksum));
        assert!(matches!(decode(addr, "ecash"), Err(CashAddrError::WrongPrefix { .. })));
        let typo = addr.replace("qpm2", "qpm3");
        assert_eq!(decode(&typo, "bitcoincash"), Err(CashAddrError::Checksum));
        assert_eq!(
            decode("bitcoincash:qPm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", "bitcoincash"),
            Err(CashAddrError::MixedCase)
        );
        assert_eq!(
            decode("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6b", "bitcoincash"),
            Err(CashAddrError::BadCharacter)
        );
    }

    #[test]
    fn ecash_prefixes_round_trip() {
        let hash = h("cb481232299cd5743151ac4b2d63ae198e7bb0a9");
        for prefix in ["ecash", "ectest", "ecregtest", "bchreg", "bchtest"] {
            let a = encode(prefix, CashAddrType::P2sh, &hash);
            assert_eq!(decode(&a, prefix).unwrap(), (CashAddrType::P2sh, hash), "{a}");
        }
    }
}
