//! The homomorphic lane's additive path: integers packed into LWE compact
//! ciphertext lists (`tfhe::core_crypto`), summed by ciphertext addition,
//! reduced to one LWE ciphertext per residue before anyone decrypts.
//!
//! Roles (`docs/FHE.md`):
//!
//! - the **ingestion** stage holds the [`PublicKey`] (an LWE compact public
//!   key) and encrypts one [`List`] of [`SLOTS`] values per residue;
//! - the **compute** stage holds no key at all: it adds lists slot-wise
//!   ([`Column::add`]) and reduces the sum to one LWE ciphertext per
//!   residue by expanding the list and adding its ciphertexts
//!   ([`Column::reduce`]), so that what leaves it encrypts only the total;
//! - the **key holder** alone reads the [`SecretKey`] and decrypts the
//!   reduced ciphertexts ([`SecretKey::decrypt`]).
//!
//! A 64-bit sum does not fit one ciphertext's plaintext space at 128-bit
//! security, so every value is encrypted as its residues modulo a few
//! primes of 17 bits ([`PRIMES`]), each in its own list; the key holder
//! learns the residues of the total and recombines them (CRT) into the
//! total, which they determine and nothing more.
//!
//! Parameters are tfhe's published 128-bit-secure public-key encryption
//! set, [`tfhe::shortint::parameters::v1_8::V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2`]:
//! LWE dimension 2048, noise TUniform(2^17) on a 2^64 modulus. The noise
//! budget ([`noise_bound`], [`MAX_LISTS`]) is derived in `docs/FHE.md`.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::algorithms::slice_algorithms::{
    slice_semi_reverse_negacyclic_convolution, slice_wrapping_add_assign,
};
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::parameters::CompactPublicKeyEncryptionParameters;
use tfhe::shortint::parameters::v1_8::V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2 as PKE_PARAMS;
use zeroize::Zeroize;

/// The published parameter set this path uses.
pub const PARAMS: CompactPublicKeyEncryptionParameters = PKE_PARAMS;

/// Values per list: the LWE dimension of the parameter set.
pub const SLOTS: usize = 2048;

/// log2 of the noise bound: TUniform draws integers in `[-2^17, 2^17]`.
pub const NOISE_BOUND_LOG2: u32 = 17;

/// The residue moduli: primes below 2^17 with the smallest `2^64 mod p`
/// (the drift of encoding on a 2^64 torus, [`noise_bound`]). Their product
/// is about 2^68.
pub const PRIMES: [u64; 4] = [130817, 131071, 130927, 130649];

/// The most lists one column may add: a documented cap below what the
/// noise allows (6,473 lists; `docs/FHE.md`), so the edge is testable.
pub const MAX_LISTS: u64 = 4096;

/// Values are less than 2^43 in magnitude: `MAX_LISTS * SLOTS * 2^43 =
/// 2^66`, under half the residues' product, so every total a column can
/// reach is recovered exactly (and one beyond 64 bits is seen as such).
pub const MAX_VALUE_BITS: u32 = 43;

/// The public key's noise term `U` (the sum over all slots of the phase
/// that an all-ones mask vector picks up) is at most this in magnitude;
/// keys beyond it are drawn again (`docs/FHE.md`: about one key pair
/// in 45,000).
pub const U_MAX_LOG2: u32 = 34;

/// The decryption failure probability budgeted per residue: 2^-128.
pub const FAILURE_LOG2: f64 = -128.0;

/// How wide a column's integers are, which decides its residues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Width {
    /// Counts: at most `MAX_LISTS * SLOTS`, two residues.
    Count,
    /// Sums of values below 2^[`MAX_VALUE_BITS`]: four residues.
    Sum,
}

impl Width {
    /// Residues (lists) per value.
    pub fn residues(self) -> usize {
        match self {
            Width::Count => 2,
            Width::Sum => 4,
        }
    }
}

/// Why an additive operation failed. No variant carries key material or
/// a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdditiveError {
    /// More lists than the noise budget allows.
    #[error(
        "the homomorphic aggregate would add more than {max} lists of {SLOTS} values ({} records): beyond the noise budget of docs/FHE.md, where decryption could fail",
        *max as usize * SLOTS
    )]
    OverBudget {
        /// [`MAX_LISTS`].
        max: u64,
    },
    /// A value outside `±2^MAX_VALUE_BITS`.
    #[error(
        "the value is outside the homomorphic lane's range (magnitude below 2^{MAX_VALUE_BITS})"
    )]
    ValueRange,
    /// More values than slots in one list.
    #[error("{0} values do not fit a list of {SLOTS}")]
    TooMany(usize),
    /// Lists or ciphertexts of the wrong shape.
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// A key file does not decode.
    #[error("the key does not decode: {0}")]
    Key(String),
    /// A reduced column that is not the sum of the lists the job sent
    /// ([`Sent::check`]): the key holder decrypts nothing else.
    #[error("{0}")]
    NotSent(String),
}

/// `floor(2^64 / p)`: the scaling of residues modulo `p`.
fn delta(p: u64) -> u64 {
    ((1u128 << 64) / u128::from(p)) as u64
}

/// The bound, in log2, on the total noise of a column of `lists` lists
/// (every slot's noise summed), exceeded with probability at most
/// 2^[`FAILURE_LOG2`]: Hoeffding's inequality over the fresh randomness
/// of the encryptions, worst-case ranges, plus the public key's fixed
/// term and the encoding's drift (`docs/FHE.md`, "Noise budget").
pub fn noise_bound(lists: u64) -> f64 {
    let n = SLOTS as f64;
    let b = f64::from(1u32 << NOISE_BOUND_LOG2);
    let c = lists as f64;
    // Squared ranges of the independent terms of one list: mask noise
    // times the secret key (|w| <= n), the random binary vector times the
    // key's noise (|u| <= n * b), the body noise.
    let ranges = n * (2.0 * b * n).powi(2) + n * (n * b).powi(2) + n * (2.0 * b).powi(2);
    let ln = (2.0f64).ln() * (1.0 - FAILURE_LOG2);
    let hoeffding = (c * ranges * ln / 2.0).sqrt();
    let fixed = c * 2f64.powi(U_MAX_LOG2 as i32) / 2.0;
    let epsilon = PRIMES
        .iter()
        .map(|p| (1u128 << 64) % u128::from(*p))
        .max()
        .unwrap_or(0);
    let drift = c * n * epsilon as f64;
    (hoeffding + fixed + drift).log2()
}

/// log2 of half the smallest residue scaling: decryption is exact while
/// the noise stays below it.
pub fn noise_room() -> f64 {
    let least = PRIMES.iter().map(|p| delta(*p)).min().unwrap_or(0);
    (least as f64 / 2.0).log2()
}

/// The most lists the noise allows (above [`MAX_LISTS`]).
pub fn noise_capacity() -> u64 {
    let room = noise_room();
    let (mut lo, mut hi) = (1u64, 1 << 20);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if noise_bound(mid) < room {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The key holder's LWE secret key (binary, dimension [`SLOTS`]). Wiped
/// when dropped.
pub struct SecretKey(LweSecretKeyOwned<u64>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.as_mut().zeroize();
    }
}

/// The ingestion stage's LWE compact public key.
#[derive(Clone, Debug)]
pub struct PublicKey(LweCompactPublicKeyOwned<u64>);

fn new_generators() -> (
    SecretRandomGenerator<DefaultRandomGenerator>,
    EncryptionRandomGenerator<DefaultRandomGenerator>,
) {
    let mut seeder = new_seeder();
    let seeder = seeder.as_mut();
    let secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
    let encryption =
        EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder);
    (secret, encryption)
}

/// Draws a key pair, again while the public key's fixed noise term is
/// above 2^[`U_MAX_LOG2`].
pub fn generate() -> (SecretKey, PublicKey) {
    let (mut secret_gen, mut encryption_gen) = new_generators();
    for _ in 0..1000 {
        let sk = SecretKey(allocate_and_generate_new_binary_lwe_secret_key(
            LweDimension(SLOTS),
            &mut secret_gen,
        ));
        let pk = PublicKey(allocate_and_generate_new_lwe_compact_public_key(
            &sk.0,
            PARAMS.encryption_noise_distribution,
            PARAMS.ciphertext_modulus,
            &mut encryption_gen,
        ));
        if sk.fixed_term(&pk).unsigned_abs() <= 1 << U_MAX_LOG2 {
            return (sk, pk);
        }
    }
    // Each draw passes with probability about 1 - 2^-15.5.
    unreachable!("1,000 key pairs in a row beyond the noise budget: the random generator is broken")
}

fn new_list() -> LweCompactCiphertextListOwned<u64> {
    LweCompactCiphertextList::new(
        0u64,
        LweSize(SLOTS + 1),
        LweCiphertextCount(SLOTS),
        CiphertextModulus::new_native(),
    )
}

impl SecretKey {
    /// The sum over all slots of the phase of the list that public-key
    /// encryption makes from an all-ones binary vector with no fresh noise:
    /// `U` of `docs/FHE.md`, whose half every list adds to a column's
    /// total on average.
    fn fixed_term(&self, pk: &PublicKey) -> i64 {
        let (pk_mask, pk_body) = pk.0.get_mask_and_body();
        let ones = vec![1u64; SLOTS];
        let mut list = new_list();
        {
            let (mut masks, mut bodies) = list.get_mut_mask_and_body_list();
            let mut mask = masks.iter_mut().next().expect("one mask");
            slice_semi_reverse_negacyclic_convolution(mask.as_mut(), pk_mask.as_ref(), &ones);
            let mut body = vec![0u64; SLOTS];
            slice_semi_reverse_negacyclic_convolution(&mut body, pk_body.as_ref(), &ones);
            for (dst, src) in bodies.iter_mut().zip(body.iter().rev()) {
                *dst.data = *src;
            }
        }
        let expanded = list.expand_into_lwe_ciphertext_list();
        let mut total = 0u64;
        for ct in expanded.iter() {
            total = total.wrapping_add(decrypt_lwe_ciphertext(&self.0, &ct).0);
        }
        total as i64
    }

    /// Decrypts a reduced column into its integer total.
    pub fn decrypt(&self, reduced: &Reduced) -> Result<i128, AdditiveError> {
        if reduced.residues.len() != reduced.width.residues() {
            return Err(AdditiveError::Malformed("residue count"));
        }
        let mut residues = Vec::with_capacity(reduced.residues.len());
        for (data, p) in reduced.residues.iter().zip(PRIMES) {
            if data.len() != SLOTS + 1 {
                return Err(AdditiveError::Malformed("ciphertext size"));
            }
            let ct =
                LweCiphertext::from_container(data.as_slice(), CiphertextModulus::new_native());
            let phase = decrypt_lwe_ciphertext(&self.0, &ct).0;
            residues.push(decode(phase, p));
        }
        Ok(crt(&residues))
    }

    /// The key as bytes, for the keystore's `tfhe/` (bincode of tfhe's
    /// serde form).
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(bincode::serialize(&self.0).expect("serialisable"))
    }

    /// The key from [`SecretKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, AdditiveError> {
        let key: LweSecretKeyOwned<u64> =
            bincode::deserialize(bytes).map_err(|e| AdditiveError::Key(e.to_string()))?;
        if key.lwe_dimension().0 != SLOTS || key.as_ref().iter().any(|b| *b > 1) {
            return Err(AdditiveError::Key(
                "not a binary key of dimension 2048".into(),
            ));
        }
        Ok(SecretKey(key))
    }
}

impl PublicKey {
    /// The key as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serialize(&self.0).expect("serialisable")
    }

    /// The key from [`PublicKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, AdditiveError> {
        let key: LweCompactPublicKeyOwned<u64> =
            bincode::deserialize(bytes).map_err(|e| AdditiveError::Key(e.to_string()))?;
        if key.lwe_dimension().0 != SLOTS {
            return Err(AdditiveError::Key("not a key of dimension 2048".into()));
        }
        Ok(PublicKey(key))
    }
}

/// `round(phase / delta) mod p`.
fn decode(phase: u64, p: u64) -> u64 {
    let d = u128::from(delta(p));
    ((u128::from(phase) + d / 2) / d % u128::from(p)) as u64
}

/// The integer in `(-P/2, P/2]` with these residues modulo the first
/// primes of [`PRIMES`] (`P` their product).
fn crt(residues: &[u64]) -> i128 {
    let mut x: i128 = 0;
    let mut modulus: i128 = 1;
    for (r, p) in residues.iter().zip(PRIMES) {
        let (r, p) = (i128::from(*r), i128::from(p));
        // x + modulus * t = r (mod p)
        let inv = mod_inverse(modulus.rem_euclid(p), p);
        let t = ((r - x).rem_euclid(p) * inv).rem_euclid(p);
        x += modulus * t;
        modulus *= p;
    }
    if x > modulus / 2 { x - modulus } else { x }
}

fn mod_inverse(a: i128, p: i128) -> i128 {
    // p is prime: a^(p-2).
    let (mut base, mut exp, mut acc) = (a, p - 2, 1i128);
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % p;
        }
        base = base * base % p;
        exp >>= 1;
    }
    acc
}

/// One encrypted list: up to [`SLOTS`] values' residues modulo one prime,
/// as tfhe's compact list container (one mask of [`SLOTS`] then [`SLOTS`]
/// bodies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct List(pub Vec<u64>);

/// Encrypts lists under a public key, with its own random generator (one
/// per thread).
pub struct Encryptor {
    key: PublicKey,
    generator: EncryptionRandomGenerator<DefaultRandomGenerator>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encryptor(..)")
    }
}

impl Encryptor {
    /// An encryptor under `key`, freshly seeded.
    pub fn new(key: PublicKey) -> Encryptor {
        Encryptor {
            key,
            generator: new_generators().1,
        }
    }

    /// Encrypts up to [`SLOTS`] values (the rest of the list is zeros):
    /// one list per residue of `width`.
    pub fn encrypt(&mut self, values: &[i64], width: Width) -> Result<Vec<List>, AdditiveError> {
        if values.len() > SLOTS {
            return Err(AdditiveError::TooMany(values.len()));
        }
        if values
            .iter()
            .any(|v| v.unsigned_abs() >= 1 << MAX_VALUE_BITS)
        {
            return Err(AdditiveError::ValueRange);
        }
        let mut out = Vec::with_capacity(width.residues());
        let mut encoded = PlaintextList::new(0u64, PlaintextCount(SLOTS));
        for p in &PRIMES[..width.residues()] {
            let d = delta(*p);
            for (slot, v) in encoded.iter_mut().zip(values) {
                *slot.0 = (v.rem_euclid(*p as i64) as u64).wrapping_mul(d);
            }
            let mut list = new_list();
            encrypt_lwe_compact_ciphertext_list_with_compact_public_key(
                &self.key.0,
                &mut list,
                &encoded,
                PARAMS.encryption_noise_distribution,
                PARAMS.encryption_noise_distribution,
                self.generator.noise_generator_mut(),
            );
            out.push(List(list.into_container()));
        }
        encoded.as_mut().zeroize();
        Ok(out)
    }
}

/// The running sum of one column's lists, in the compute stage: one
/// accumulated list per residue.
#[derive(Clone, Debug)]
pub struct Column {
    width: Width,
    sums: Vec<Vec<u64>>,
    lists: u64,
}

/// A column reduced to one LWE ciphertext per residue: what the key holder
/// decrypts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduced {
    /// The column's width.
    pub width: Width,
    /// How many lists were added.
    pub lists: u64,
    /// One LWE ciphertext (mask then body) per residue.
    pub residues: Vec<Vec<u64>>,
}

const LIST_LEN: usize = 2 * SLOTS;

impl Reduced {
    /// Whether `total` is one that its lists can add up to: a count
    /// between 0 and one per slot, a sum below 2^[`MAX_VALUE_BITS`] per
    /// slot in magnitude. The bodies of a reduced column cannot be checked
    /// before decryption ([`Sent::check`]); a stage that shifts one residue
    /// (to read a bit of the noise, or to publish a total of its choosing)
    /// mostly lands far outside this range, where the total is refused.
    pub fn reachable(&self, total: i128) -> bool {
        let slots = i128::from(self.lists) * SLOTS as i128;
        match self.width {
            Width::Count => (0..=slots).contains(&total),
            Width::Sum => total.abs() < slots << MAX_VALUE_BITS,
        }
    }
}

/// The mask of the ciphertext [`Column::reduce`] makes of a summed list
/// whose mask is `m`. Expansion gives ciphertext `i` the mask `m·X^i` in
/// `Z_2^64[X]/(X^N + 1)` (tfhe's `expand_lwe_compact_ciphertext_list`), so
/// the sum over `i < N` has coordinate `j` equal to `Σ_{k≤j} m_k −
/// Σ_{k>j} m_k`: linear time, where expanding is quadratic.
fn reduced_mask(m: &[u64]) -> Vec<u64> {
    let total = m.iter().fold(0u64, |a, x| a.wrapping_add(*x));
    let mut prefix = 0u64;
    m.iter()
        .map(|x| {
            prefix = prefix.wrapping_add(*x);
            prefix.wrapping_mul(2).wrapping_sub(total)
        })
        .collect()
}

/// What the ingestion side handed the compute stage for one column: how
/// many lists, and per residue the wrapping sum of their masks.
///
/// A list's mask travels in the clear beside its bodies, so this is no
/// secret. It is what makes the key holder decrypt only what was sent
/// ([`Sent::check`]): the mask of a reduced ciphertext is a function of
/// the summed masks alone, so a compute stage cannot return a ciphertext
/// of its choosing (say a mask with one non-zero coordinate, which would
/// decrypt to a bit of the secret key) without it being refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    width: Width,
    lists: u64,
    masks: Vec<Vec<u64>>,
}

impl Sent {
    /// Nothing sent yet.
    pub fn new(width: Width) -> Sent {
        Sent {
            width,
            lists: 0,
            masks: vec![vec![0u64; SLOTS]; width.residues()],
        }
    }

    /// Records one value-list's residues as they are sent.
    pub fn add(&mut self, lists: &[List]) -> Result<(), AdditiveError> {
        if lists.len() != self.width.residues() {
            return Err(AdditiveError::Malformed("residue count"));
        }
        if lists.iter().any(|l| l.0.len() != LIST_LEN) {
            return Err(AdditiveError::Malformed("list size"));
        }
        // The noise budget is the key holder's to keep, not the stage's.
        if self.lists >= MAX_LISTS {
            return Err(AdditiveError::OverBudget { max: MAX_LISTS });
        }
        for (mask, list) in self.masks.iter_mut().zip(lists) {
            slice_wrapping_add_assign(mask, &list.0[..SLOTS]);
        }
        self.lists += 1;
        Ok(())
    }

    /// Lists sent.
    pub fn lists(&self) -> u64 {
        self.lists
    }

    /// Whether `reduced` is what reducing the sent lists gives, as far as
    /// anyone without the key can tell: the same width and list count,
    /// and per residue the mask that the summed masks reduce to. (The
    /// bodies carry the data and cannot be checked; a stage that alters
    /// one shifts that total but learns nothing it did not hold.)
    pub fn check(&self, reduced: &Reduced) -> Result<(), AdditiveError> {
        let not_sent = |why: String| {
            Err(AdditiveError::NotSent(format!(
                "not the sum of the lists the job sent: {why}"
            )))
        };
        if reduced.width != self.width {
            return not_sent("another width".into());
        }
        if reduced.lists != self.lists {
            return not_sent(format!(
                "{} lists, the job sent {}",
                reduced.lists, self.lists
            ));
        }
        if reduced.residues.len() != self.masks.len()
            || reduced.residues.iter().any(|r| r.len() != SLOTS + 1)
        {
            return not_sent("malformed ciphertexts".into());
        }
        for (got, summed) in reduced.residues.iter().zip(&self.masks) {
            if got[..SLOTS] != reduced_mask(summed)[..] {
                return not_sent("a mask differs".into());
            }
        }
        Ok(())
    }
}

impl Column {
    /// An empty column.
    pub fn new(width: Width) -> Column {
        Column {
            width,
            sums: vec![vec![0u64; LIST_LEN]; width.residues()],
            lists: 0,
        }
    }

    /// Lists added so far.
    pub fn lists(&self) -> u64 {
        self.lists
    }

    /// Adds one value-list's residues (from [`Encryptor::encrypt`]).
    pub fn add(&mut self, lists: &[List]) -> Result<(), AdditiveError> {
        if lists.len() != self.width.residues() {
            return Err(AdditiveError::Malformed("residue count"));
        }
        if lists.iter().any(|l| l.0.len() != LIST_LEN) {
            return Err(AdditiveError::Malformed("list size"));
        }
        if self.lists >= MAX_LISTS {
            return Err(AdditiveError::OverBudget { max: MAX_LISTS });
        }
        for (sum, list) in self.sums.iter_mut().zip(lists) {
            slice_wrapping_add_assign(sum, &list.0);
        }
        self.lists += 1;
        Ok(())
    }

    /// Adds another column's sums (partial columns of several workers).
    pub fn merge(&mut self, other: &Column) -> Result<(), AdditiveError> {
        if other.width != self.width {
            return Err(AdditiveError::Malformed("widths differ"));
        }
        if self.lists + other.lists > MAX_LISTS {
            return Err(AdditiveError::OverBudget { max: MAX_LISTS });
        }
        for (sum, o) in self.sums.iter_mut().zip(&other.sums) {
            slice_wrapping_add_assign(sum, o);
        }
        self.lists += other.lists;
        Ok(())
    }

    /// Reduces each residue's summed list to one LWE ciphertext of the
    /// column's total: the sum of the list's [`SLOTS`] ciphertexts as
    /// expansion would give them. Expansion gives ciphertext `i` the mask
    /// `m·X^i` and the body `b_i`, so the sum's mask is
    /// [`reduced_mask`]`(m)` and its body the wrapping sum of the bodies:
    /// linear time and no allocation beyond the answer, where expanding
    /// costs a 33.6 MB list and quadratic time per residue (the compute
    /// stage reduces a stream's columns at every epoch's end).
    /// `reduce_equals_expansion` checks this against tfhe's expansion.
    pub fn reduce(self) -> Reduced {
        let residues = self
            .sums
            .into_iter()
            .map(|sum| {
                let (mask, bodies) = sum.split_at(SLOTS);
                let mut total = reduced_mask(mask);
                total.push(bodies.iter().fold(0u64, |a, b| a.wrapping_add(*b)));
                total
            })
            .collect();
        Reduced {
            width: self.width,
            lists: self.lists,
            residues,
        }
    }

    /// [`Column::reduce`] by tfhe's own expansion of each list into its
    /// ciphertexts, added one by one: what the linear reduction must
    /// equal.
    #[cfg(test)]
    fn reduce_by_expansion(self) -> Reduced {
        let residues = self
            .sums
            .into_iter()
            .map(|sum| {
                let list = LweCompactCiphertextList::from_container(
                    sum,
                    LweSize(SLOTS + 1),
                    LweCiphertextCount(SLOTS),
                    CiphertextModulus::new_native(),
                );
                let expanded = list.expand_into_lwe_ciphertext_list();
                let mut total =
                    LweCiphertext::new(0u64, LweSize(SLOTS + 1), CiphertextModulus::new_native());
                for ct in expanded.iter() {
                    lwe_ciphertext_add_assign(&mut total, &ct);
                }
                total.into_container()
            })
            .collect();
        Reduced {
            width: self.width,
            lists: self.lists,
            residues,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime(n: u64) -> bool {
        n > 1
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn parameters_are_the_published_set() {
        assert_eq!(PARAMS.encryption_lwe_dimension.0, SLOTS);
        assert_eq!(
            PARAMS.encryption_noise_distribution,
            DynamicDistribution::new_t_uniform(NOISE_BOUND_LOG2)
        );
        assert!(PARAMS.ciphertext_modulus.is_native_modulus());
    }

    #[test]
    fn residues_cover_the_value_range() {
        assert!(PRIMES.iter().all(|p| is_prime(*p)));
        let product: f64 = PRIMES.iter().map(|p| (*p as f64).log2()).sum();
        // The largest total: MAX_LISTS * SLOTS values of 2^MAX_VALUE_BITS.
        let largest = (MAX_LISTS as f64 * SLOTS as f64).log2() + f64::from(MAX_VALUE_BITS);
        assert!(largest < product - 1.0, "{largest} vs {product}");
        let counts: f64 = PRIMES[..2].iter().map(|p| (*p as f64).log2()).sum();
        assert!((MAX_LISTS as f64 * SLOTS as f64).log2() < counts - 1.0);
    }

    #[test]
    fn the_cap_is_inside_the_noise_budget() {
        assert!(noise_bound(MAX_LISTS) < noise_room());
        let capacity = noise_capacity();
        assert!(capacity >= MAX_LISTS);
        assert!(noise_bound(capacity + 1) >= noise_room());
        // docs/FHE.md states these numbers.
        assert_eq!(capacity, 6473);
    }

    #[test]
    fn crt_recovers_signed_totals() {
        for x in [
            0i128,
            1,
            -1,
            1 << 62,
            -(1 << 66),
            (1 << 66) + 12345,
            i64::MIN as i128,
        ] {
            let residues: Vec<u64> = PRIMES
                .iter()
                .map(|p| x.rem_euclid(*p as i128) as u64)
                .collect();
            assert_eq!(crt(&residues), x);
        }
        let small: Vec<u64> = PRIMES[..2].iter().map(|p| 77 % p).collect();
        assert_eq!(crt(&small), 77);
    }

    #[test]
    fn sums_decrypt_exactly() {
        let (sk, pk) = generate();
        let mut enc = Encryptor::new(pk);
        let a: Vec<i64> = (0..SLOTS as i64)
            .map(|i| i * 1_000_003 - 7_000_000)
            .collect();
        let b: Vec<i64> = vec![-(1 << 42); 100];
        let mut col = Column::new(Width::Sum);
        col.add(&enc.encrypt(&a, Width::Sum).unwrap()).unwrap();
        col.add(&enc.encrypt(&b, Width::Sum).unwrap()).unwrap();
        let want: i128 = a.iter().chain(&b).map(|v| i128::from(*v)).sum();
        assert_eq!(sk.decrypt(&col.reduce()).unwrap(), want);

        let mut count = Column::new(Width::Count);
        count
            .add(&enc.encrypt(&[1; 3], Width::Count).unwrap())
            .unwrap();
        assert_eq!(sk.decrypt(&count.reduce()).unwrap(), 3);
    }

    #[test]
    fn reduce_equals_expansion() {
        let (sk, pk) = generate();
        let mut enc = Encryptor::new(pk);
        let mut col = Column::new(Width::Sum);
        for i in 0..3i64 {
            let values: Vec<i64> = (0..(600 * (i + 1))).map(|v| v * 31 - i).collect();
            col.add(&enc.encrypt(&values, Width::Sum).unwrap()).unwrap();
        }
        let linear = col.clone().reduce();
        let expanded = col.reduce_by_expansion();
        assert!(linear.residues == expanded.residues);
        assert_eq!(sk.decrypt(&linear).unwrap(), sk.decrypt(&expanded).unwrap());
    }

    #[test]
    fn only_the_reduction_of_what_was_sent_passes() {
        let (_, pk) = generate();
        let mut enc = Encryptor::new(pk);
        let lists: Vec<Vec<List>> = (0..3)
            .map(|i| enc.encrypt(&[i, 2 * i, 7], Width::Sum).unwrap())
            .collect();
        let mut sent = Sent::new(Width::Sum);
        // Two workers' columns, merged: the order of addition is free.
        let (mut a, mut b) = (Column::new(Width::Sum), Column::new(Width::Sum));
        for (i, l) in lists.iter().enumerate() {
            sent.add(l).unwrap();
            if i == 1 { b.add(l) } else { a.add(l) }.unwrap();
        }
        a.merge(&b).unwrap();
        let honest = a.reduce();
        sent.check(&honest).unwrap();

        // A list left out, a changed list count, a moved mask coordinate,
        // a probe of one key coordinate: each refused.
        let mut fewer = Column::new(Width::Sum);
        fewer.add(&lists[0]).unwrap();
        fewer.add(&lists[1]).unwrap();
        let mut fewer = fewer.reduce();
        fewer.lists = 3;
        let mut lists_changed = honest.clone();
        lists_changed.lists = 4;
        let mut moved = honest.clone();
        moved.residues[2][5] = moved.residues[2][5].wrapping_add(1);
        let mut probe = honest.clone();
        for r in &mut probe.residues {
            r.iter_mut().for_each(|w| *w = 0);
            r[0] = 1 << 47;
        }
        for wrong in [fewer, lists_changed, moved, probe] {
            assert!(matches!(sent.check(&wrong), Err(AdditiveError::NotSent(_))));
        }
        // The bodies are not checked: they carry the data.
        let mut body = honest;
        body.residues[0][SLOTS] ^= 1;
        sent.check(&body).unwrap();
    }

    #[test]
    fn out_of_range_values_and_oversized_lists_are_refused() {
        let (_, pk) = generate();
        let mut enc = Encryptor::new(pk);
        assert_eq!(
            enc.encrypt(&[1 << MAX_VALUE_BITS], Width::Sum),
            Err(AdditiveError::ValueRange)
        );
        assert_eq!(
            enc.encrypt(&vec![0; SLOTS + 1], Width::Sum),
            Err(AdditiveError::TooMany(SLOTS + 1))
        );
    }

    #[test]
    fn keys_round_trip_and_the_fixed_term_is_bounded() {
        let (sk, pk) = generate();
        assert!(sk.fixed_term(&pk).unsigned_abs() <= 1 << U_MAX_LOG2);
        let sk2 = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
        let pk2 = PublicKey::from_bytes(&pk.to_bytes()).unwrap();
        let mut enc = Encryptor::new(pk2);
        let mut col = Column::new(Width::Count);
        col.add(&enc.encrypt(&[5, 6], Width::Count).unwrap())
            .unwrap();
        assert_eq!(sk2.decrypt(&col.reduce()).unwrap(), 11);
        assert!(SecretKey::from_bytes(b"nope").is_err());
    }
}
