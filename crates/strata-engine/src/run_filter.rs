//! A run's key filter (runs of version 3): a Bloom filter over the keys' hashes, held in
//! memory beside the fences, so that a lookup of a key the run does not hold — a new
//! stream's head at its first append, a new correlation id or tag counted by the index
//! saver — reads no directory block of that run in most cases. A filter says "absent" only
//! for keys the run does not hold (no false negatives); about 1% of absent keys pass
//! ([`BITS_PER_KEY`], [`PROBES`]) and are looked up as before.
//!
//! Layout (little-endian, docs/ON_DISK_FORMAT.md "Sorted runs"): u32 probe count, u32
//! reserved, u64 bit count (a multiple of 64), then the bits as u64 words. The probes
//! come from the key's 64-bit run hash ([`crate::run_file::key_hash`]), mixed, by double
//! hashing: bit `(h1 + i × h2) mod bits` for `i` in `0..probes`.

/// Bits per key: with [`PROBES`] probes, about 1% of absent keys pass.
const BITS_PER_KEY: u64 = 10;
const PROBES: u32 = 7;
/// Probe count, reserved, bit count.
pub(crate) const FILTER_HEADER_BYTES: usize = 16;
/// The most probes a filter read back may ask for.
const PROBES_MAX: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyFilter {
    probes: u32,
    words: Vec<u64>,
}

impl KeyFilter {
    /// An empty filter sized for `key_count` keys.
    pub(crate) fn with_capacity(key_count: u64) -> Self {
        let bits = (key_count.saturating_mul(BITS_PER_KEY)).max(64);
        let words = usize::try_from(bits.div_ceil(64)).unwrap_or(usize::MAX / 8);
        Self {
            probes: PROBES,
            words: vec![0; words],
        }
    }

    /// Adds a key by its run hash.
    pub(crate) fn insert(&mut self, key_hash: u64) {
        let bits = self.bit_count();
        for bit in probes(key_hash, self.probes, bits) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False only when no key of that hash was inserted.
    pub(crate) fn may_contain(&self, key_hash: u64) -> bool {
        let bits = self.bit_count();
        probes(key_hash, self.probes, bits)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn bit_count(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Bytes of memory the filter holds.
    pub(crate) fn resident_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    /// The filter as stored.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FILTER_HEADER_BYTES + self.words.len() * 8);
        bytes.extend_from_slice(&self.probes.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&self.bit_count().to_le_bytes());
        for word in &self.words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Reads a stored filter; the error says why it cannot be (the bytes' checksum is
    /// the run's, checked by the caller).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let header = bytes
            .get(..FILTER_HEADER_BYTES)
            .ok_or("has a key filter shorter than its header")?;
        let probes = u32::from_le_bytes(header[0..4].try_into().unwrap_or([0; 4]));
        let bits = u64::from_le_bytes(header[8..16].try_into().unwrap_or([0; 8]));
        let body = &bytes[FILTER_HEADER_BYTES..];
        if !(1..=PROBES_MAX).contains(&probes)
            || bits == 0
            || !bits.is_multiple_of(64)
            || bits / 8 != body.len() as u64
        {
            return Err("has a key filter whose header does not fit it".into());
        }
        Ok(Self {
            probes,
            words: body
                .chunks_exact(8)
                .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8])))
                .collect(),
        })
    }
}

/// The bits a key sets: double hashing over the mixed hash (the run hash is FNV-1a, whose
/// low bits vary little between similar keys).
fn probes(key_hash: u64, probes: u32, bits: u64) -> impl Iterator<Item = u64> {
    let mixed = mix(key_hash);
    let first = mixed;
    let step = mixed.rotate_left(32) | 1;
    (0..u64::from(probes)).map(move |probe| first.wrapping_add(probe.wrapping_mul(step)) % bits)
}

/// The finalizer of splitmix64.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_file::key_hash;

    #[test]
    fn holds_every_key_and_passes_few_others() {
        let keys: Vec<u64> = (0..10_000)
            .map(|number| key_hash(3, format!("command-{number}").as_bytes()))
            .collect();
        let mut filter = KeyFilter::with_capacity(keys.len() as u64);
        for &key in &keys {
            filter.insert(key);
        }
        let filter = KeyFilter::from_bytes(&filter.to_bytes()).unwrap();
        assert!(keys.iter().all(|&key| filter.may_contain(key)));
        let passed = (10_000..110_000)
            .filter(|number| {
                filter.may_contain(key_hash(3, format!("command-{number}").as_bytes()))
            })
            .count();
        assert!(passed < 3_000, "{passed} of 100,000 absent keys pass");
    }

    #[test]
    fn refuses_headers_that_do_not_fit() {
        let good = KeyFilter::with_capacity(10).to_bytes();
        assert!(KeyFilter::from_bytes(&good).is_ok());
        assert!(KeyFilter::from_bytes(&good[..good.len() - 8]).is_err());
        assert!(KeyFilter::from_bytes(&good[..8]).is_err());
        let mut no_probes = good.clone();
        no_probes[0..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(KeyFilter::from_bytes(&no_probes).is_err());
        let empty = KeyFilter::with_capacity(0);
        assert!(!empty.may_contain(key_hash(0, b"anything")));
    }
}
