//! Tests of the routing: the solver against brute force, the ζ extremes, the limits and the
//! energy floors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn system(name: &str, energy: [f64; 3], quality: f64) -> RouteSystem {
    RouteSystem {
        name: name.into(),
        model: String::new(),
        gpu: String::new(),
        gpus: 1,
        energy_j: energy,
        runtime_s: [0.001, 0.01, 0.0],
        batch_size: 1,
        quality,
        min_share: None,
        max_share: None,
        max_queries: None,
        min_energy_j: 0.0,
        min_runtime_s: 0.0,
        energy_intercept_j: 0.0,
        runtime_intercept_s: 0.0,
        fitted_range: None,
    }
}

fn config(systems: Vec<RouteSystem>, strict: bool) -> RouteConfig {
    RouteConfig {
        route: RouteSettings { strict_shares: strict, ..RouteSettings::default() },
        system: systems,
    }
}

/// Every assignment of the individual queries, the feasible ones' best objective.
fn brute_force(p: &RouteProblem, zeta: f64) -> Option<f64> {
    let queries: Vec<usize> =
        p.classes().iter().enumerate().flat_map(|(c, q)| std::iter::repeat_n(c, q.count as usize)).collect();
    let k = p.systems().len();
    let mut best: Option<f64> = None;
    let combos = k.pow(queries.len() as u32);
    for mut code in 0..combos {
        let mut counts = vec![vec![0u64; k]; p.classes().len()];
        for &c in &queries {
            counts[c][code % k] += 1;
            code /= k;
        }
        let a = p.evaluate(zeta, counts);
        let feasible = a.per_system.iter().zip(p.bounds()).all(|(&n, &(lo, hi))| n >= lo && n <= hi);
        if feasible && best.is_none_or(|b| a.objective < b) {
            best = Some(a.objective);
        }
    }
    best
}

/// A small deterministic generator (no rand dependency in the test's logic).
fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn matches_brute_force_on_tiny_instances() {
    let mut rng = 7u64;
    let mut solved = 0;
    for instance in 0..60 {
        let k = 2 + (lcg(&mut rng) % 2) as usize;
        let systems: Vec<RouteSystem> = (0..k)
            .map(|i| {
                let mut s = system(
                    &format!("s{i}"),
                    [
                        (lcg(&mut rng) % 50) as f64 - 10.0,
                        (lcg(&mut rng) % 50) as f64,
                        (lcg(&mut rng) % 100) as f64 / 100.0,
                    ],
                    40.0 + (lcg(&mut rng) % 30) as f64,
                );
                match lcg(&mut rng) % 4 {
                    0 => s.max_queries = Some(1 + lcg(&mut rng) % 3),
                    1 => s.min_share = Some(0.3),
                    2 => s.max_share = Some(0.6),
                    _ => {}
                }
                s
            })
            .collect();
        let n = 3 + (lcg(&mut rng) % 4) as usize;
        let queries: Vec<(u32, u32)> = (0..n)
            .map(|_| (1 + (lcg(&mut rng) % 3) as u32 * 40, 1 + (lcg(&mut rng) % 3) as u32 * 60))
            .collect();
        let strict = instance % 2 == 0;
        let Ok(p) = RouteProblem::new(config(systems, strict), group_queries(queries)) else {
            // Infeasible limits are rejected up front; brute force must agree.
            continue;
        };
        for zeta in [0.0, 0.3, 0.7, 1.0] {
            let a = p.solve(zeta).unwrap();
            let best = brute_force(&p, zeta).expect("new() accepted a feasible problem");
            assert!((a.objective - best).abs() < 1e-9 * (1.0 + best.abs()), "instance {instance} ζ={zeta}");
            for (&m, &(lo, hi)) in a.per_system.iter().zip(p.bounds()) {
                assert!(m >= lo && m <= hi, "instance {instance}: {m} outside [{lo}, {hi}]");
            }
            assert_eq!(a.per_system.iter().sum::<u64>(), p.total());
        }
        solved += 1;
    }
    // The limits are drawn loosely enough that most instances are feasible.
    assert!(solved >= 40, "only {solved} feasible instances");
}

fn three_systems() -> Vec<RouteSystem> {
    vec![
        system("small", [0.0, 0.0, 1.0], 50.0),
        system("medium", [0.0, 0.0, 2.0], 55.0),
        system("large", [0.0, 0.0, 12.0], 65.0),
    ]
}

fn queries() -> Vec<QueryClass> {
    group_queries((0..100u32).map(|i| (10 + i % 7 * 30, 20 + i % 5 * 40)))
}

#[test]
fn zeta_one_minimises_energy_and_zeta_zero_maximises_quality_under_strict_shares() {
    let p = RouteProblem::new(config(three_systems(), true), queries()).unwrap();
    let energy = p.solve(1.0).unwrap();
    // Every system keeps at least one query; the rest go to the cheapest, and the one
    // query each of the others gets is the cheapest query there is.
    assert_eq!(energy.per_system[1..], [1, 1]);
    let quality = p.solve(0.0).unwrap();
    assert_eq!(quality.per_system[..2], [1, 1]);
    assert!((quality.mean_quality - (50.0 + 55.0 + 65.0 * 98.0) / 100.0).abs() < 1e-9);
    // Any other feasible assignment is no better on its own axis.
    for zeta in [0.1, 0.5, 0.9] {
        let a = p.solve(zeta).unwrap();
        assert!(a.energy_j >= energy.energy_j - 1e-6);
        assert!(a.mean_quality <= quality.mean_quality + 1e-9);
    }
    let smallest = p.classes().iter().map(|c| f64::from(c.input_tokens) * f64::from(c.output_tokens));
    let min_tt = smallest.fold(f64::INFINITY, f64::min);
    let rest: f64 = p
        .classes()
        .iter()
        .map(|c| c.count as f64 * f64::from(c.input_tokens) * f64::from(c.output_tokens))
        .sum::<f64>()
        - 2.0 * min_tt;
    assert!((energy.energy_j - (rest + 2.0 * min_tt + 12.0 * min_tt)).abs() < 1e-6);
}

#[test]
fn without_strict_shares_the_extremes_take_everything() {
    let p = RouteProblem::new(config(three_systems(), false), queries()).unwrap();
    assert_eq!(p.solve(1.0).unwrap().per_system, vec![100, 0, 0]);
    assert_eq!(p.solve(0.0).unwrap().per_system, vec![0, 0, 100]);
}

#[test]
fn user_shares_and_capacities_hold_across_the_sweep() {
    let mut systems = three_systems();
    systems[0].max_share = Some(0.5);
    systems[1].min_share = Some(0.2);
    systems[2].max_queries = Some(30);
    let p = RouteProblem::new(config(systems, true), queries()).unwrap();
    for a in p.sweep(11).unwrap() {
        assert!(a.per_system[0] <= 50, "{:?}", a.per_system);
        assert!(a.per_system[1] >= 20);
        assert!((1..=30).contains(&a.per_system[2]));
        assert_eq!(a.per_system.iter().sum::<u64>(), 100);
    }
    // Energy falls and quality falls as ζ grows (weakly).
    let sweep = p.sweep(11).unwrap();
    for w in sweep.windows(2) {
        assert!(w[1].energy_j <= w[0].energy_j + 1e-6);
        assert!(w[1].mean_quality <= w[0].mean_quality + 1e-9);
    }
}

#[test]
fn infeasible_limits_say_what_to_change() {
    let mut systems = three_systems();
    systems.iter_mut().for_each(|s| s.min_share = Some(0.4));
    let e = RouteProblem::new(config(systems, true), queries()).unwrap_err().to_string();
    assert!(e.contains("min_share"), "{e}");
    let mut systems = three_systems();
    systems.iter_mut().for_each(|s| s.max_queries = Some(10));
    let e = RouteProblem::new(config(systems, true), queries()).unwrap_err().to_string();
    assert!(e.contains("max_queries"), "{e}");
    let mut systems = three_systems();
    systems[1].name = "small".into();
    let e = RouteProblem::new(config(systems, true), queries()).unwrap_err().to_string();
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn negative_predictions_are_floored_and_counted() {
    let systems = vec![system("a", [-100.0, -100.0, 1.0], 50.0), system("b", [1.0, 1.0, 0.0], 60.0)];
    let p = RouteProblem::new(config(systems, false), group_queries([(10, 10), (300, 300)])).unwrap();
    assert_eq!(p.clamped(), 1);
    assert_eq!(p.systems()[0].energy_per_query_j(10, 10), 0.0);
    let mut floored = p.systems()[0].clone();
    floored.min_energy_j = 2.5;
    assert_eq!(floored.energy_per_query_j(10, 10), 2.5);
    assert!(floored.energy_per_query_j(300, 300) > 2.5);
}

#[test]
fn queries_outside_the_fitted_range_are_counted_not_floored() {
    let mut a = system("a", [1.0, 2.0, 0.0], 1.0);
    a.fitted_range = Some(FittedRange { input_tokens: [1, 100], output_tokens: [10, 100] });
    a.energy_intercept_j = 5.0;
    let b = system("b", [1.0, 1.0, 0.0], 2.0);
    let classes = group_queries([(50, 50), (50, 50), (500, 50), (50, 5)]);
    let p = RouteProblem::new(config(vec![a.clone(), b], false), classes).unwrap();
    assert_eq!(p.extrapolated(), 2, "two queries lie outside a's grid; b has none");
    assert_eq!(p.clamped(), 0);
    // The intercept is part of the prediction: 5 + 50 + 100 per batch of 1.
    assert_eq!(a.energy_per_query_j(50, 50), 155.0);
    let mut bad = config(vec![a], false);
    bad.system[0].fitted_range = Some(FittedRange { input_tokens: [100, 1], output_tokens: [1, 2] });
    assert!(bad.validate().unwrap_err().to_string().contains("fitted_range"));
}
