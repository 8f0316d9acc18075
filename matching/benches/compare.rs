//! Comparisons per second: a prepared pair through every default field and
//! the model's weight, as bulk deduplication scores candidate pairs.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use c360_matching::{
    Input, Record,
    compare::Field,
    model::{Frequencies, Model},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn records() -> Vec<Record> {
    let given = ["Anna", "Jan", "Małgorzata", "Piotr", "Bob", "Robert", "Katarzyna", "Kasia"];
    let family = ["Nowak", "Kowalski", "Kowalska", "Wiśniewski", "Smith", "Smyth", "Lee-Smith", "Okonkwo"];
    (0..64)
        .map(|i| {
            Record::prepare(&Input {
                given_name: given[i % given.len()].into(),
                family_name: family[(i / 3) % family.len()].into(),
                birth_date: format!("19{:02}-{:02}-{:02}", 50 + i % 40, 1 + i % 12, 1 + i % 28),
                emails: vec![format!("person{}@example.com", i / 2)],
                phones: vec![format!("+4820{:07}", i * 7919 % 10_000_000)],
                addresses: vec![format!("{} Main Street", i % 17)],
                postal_code: format!("00-{:03}", i % 50),
                locality: ["Warszawa", "Kraków", "Łódź"][i % 3].into(),
                attributes: vec![],
            })
        })
        .collect()
}

fn compare(c: &mut Criterion) {
    let records = records();
    let model = Model::new(Field::defaults());
    let frequencies = Frequencies::count(&model, &records);
    let pairs: Vec<(usize, usize)> =
        (0..records.len()).flat_map(|i| (0..records.len()).filter(move |&j| j != i).map(move |j| (i, j))).collect();
    let mut group = c.benchmark_group("compare");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("gamma+weight with term frequencies, default fields", |b| {
        let mut gamma = Vec::new();
        b.iter(|| {
            let mut total = 0.0;
            for &(i, j) in &pairs {
                model.gamma(&records[i], &records[j], &mut gamma);
                total += model.weight(&gamma, &records[i], &records[j], Some(&frequencies));
            }
            std::hint::black_box(total)
        })
    });
    // The reference measured in the same sitting: one Jaro-Winkler of the
    // two family names per pair, the cheapest comparison a matcher makes.
    group.bench_function("jaro-winkler of family names alone", |b| {
        b.iter(|| {
            let mut total = 0.0;
            for &(i, j) in &pairs {
                total += strsim::jaro_winkler(&records[i].family, &records[j].family);
            }
            std::hint::black_box(total)
        })
    });
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
