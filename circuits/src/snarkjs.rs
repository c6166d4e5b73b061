//! Our Groth16 proofs and verifying keys in snarkjs' JSON format (curve
//! "bn128", its name for BN254), so an auditor can check a proof with
//! `snarkjs groth16 verify verification_key.json public.json proof.json`,
//! a tool we did not write.
//!
//! snarkjs writes field elements as decimal strings, points in projective
//! form with z = 1 (`[x, y, "1"]`), G2 coordinates as `[c0, c1]`, and checks
//! the same equation arkworks does: e(A, B) = e(α, β)·e(Σ xᵢ·ICᵢ, γ)·e(C, δ).

use ark_bn254::{Bn254, G1Affine, G2Affine};
use ark_groth16::{Proof, VerifyingKey};
use serde_json::{Value, json};

use crate::Fr;

fn g1(p: &G1Affine) -> Value {
    json!([p.x.to_string(), p.y.to_string(), "1"])
}

fn g2(p: &G2Affine) -> Value {
    json!([
        [p.x.c0.to_string(), p.x.c1.to_string()],
        [p.y.c0.to_string(), p.y.c1.to_string()],
        ["1", "0"]
    ])
}

/// `verification_key.json`.
pub fn verifying_key(vk: &VerifyingKey<Bn254>) -> Value {
    json!({
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": vk.gamma_abc_g1.len() - 1,
        "vk_alpha_1": g1(&vk.alpha_g1),
        "vk_beta_2": g2(&vk.beta_g2),
        "vk_gamma_2": g2(&vk.gamma_g2),
        "vk_delta_2": g2(&vk.delta_g2),
        "IC": vk.gamma_abc_g1.iter().map(g1).collect::<Vec<_>>(),
    })
}

/// `proof.json`.
pub fn proof(proof: &Proof<Bn254>) -> Value {
    json!({
        "protocol": "groth16",
        "curve": "bn128",
        "pi_a": g1(&proof.a),
        "pi_b": g2(&proof.b),
        "pi_c": g1(&proof.c),
    })
}

/// `public.json`.
pub fn public(inputs: &[Fr]) -> Value {
    Value::Array(inputs.iter().map(|x| json!(x.to_string())).collect())
}

#[cfg(test)]
mod tests {
    use ark_ff::{One, Zero};

    use super::*;

    #[test]
    fn field_elements_are_decimal() {
        let v = public(&[Fr::zero(), Fr::one(), -Fr::one()]);
        assert_eq!(v[0], "0");
        assert_eq!(v[1], "1");
        // r - 1
        assert_eq!(
            v[2],
            "21888242871839275222246405745257275088548364400416034343698204186575808495616"
        );
    }
}
