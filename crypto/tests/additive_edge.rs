//! The additive path at the edge of its documented noise budget
//! (`docs/FHE.md`): the most lists a column may add, every slot holding the
//! largest value, decrypts exactly; one list more is refused.

use rayon::prelude::*;
use symbiont_crypto::additive::{
    AdditiveError, Column, Encryptor, MAX_LISTS, MAX_VALUE_BITS, SLOTS, Width, generate,
};

#[test]
fn the_largest_column_decrypts_exactly_and_one_list_more_is_refused() {
    let (secret, public) = generate();
    let largest = (1i64 << MAX_VALUE_BITS) - 1;
    let values = vec![largest; SLOTS];
    // Fresh encryptions (fresh noise) for every list, on every core.
    let lists: Vec<_> = (0..MAX_LISTS)
        .into_par_iter()
        .map_init(
            || Encryptor::new(public.clone()),
            |enc, _| enc.encrypt(&values, Width::Sum).unwrap(),
        )
        .collect();
    let mut column = Column::new(Width::Sum);
    for l in &lists {
        column.add(l).unwrap();
    }
    assert_eq!(column.lists(), MAX_LISTS);
    assert_eq!(
        column.clone().add(&lists[0]),
        Err(AdditiveError::OverBudget { max: MAX_LISTS })
    );
    let total = secret.decrypt(&column.reduce()).unwrap();
    let want = i128::from(MAX_LISTS) * SLOTS as i128 * i128::from(largest);
    assert_eq!(total, want);
    // Beyond 64 bits, and recovered exactly: the job reports it as an
    // overflow rather than a wrapped sum.
    assert!(total > i128::from(i64::MAX));
}

#[test]
fn negative_values_at_the_range_limit_decrypt_exactly() {
    let (secret, public) = generate();
    let mut enc = Encryptor::new(public);
    let smallest = -((1i64 << MAX_VALUE_BITS) - 1);
    let mut column = Column::new(Width::Sum);
    for _ in 0..16 {
        column
            .add(&enc.encrypt(&[smallest; SLOTS], Width::Sum).unwrap())
            .unwrap();
    }
    let want = 16 * SLOTS as i128 * i128::from(smallest);
    assert_eq!(secret.decrypt(&column.reduce()).unwrap(), want);
}
