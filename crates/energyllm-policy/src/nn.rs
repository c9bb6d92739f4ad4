//! A small dense network (multi-layer perceptron) with hand-written backpropagation, and Adam.
//!
//! Why not candle (the suggestion): the networks here are 64–256 units wide and the
//! minibatches 64–256 samples. At that size a framework's per-operation overhead (tensor
//! allocation, dispatch, the autograd graph) dominates: measured on the development machine
//! (2 cores), candle took about 2.7 ms per forward + backward + Adam step on a 64-sample
//! minibatch of a 64-64 network and minutes of extra build time, where these loops take tens of
//! microseconds, and a single decision is a few microseconds with no allocation. Training speed
//! is a stated target of the PPO issue, so the network is written out: f32, row-major weights,
//! dot products with eight independent accumulators so that the compiler vectorises them without
//! reassociating a single sum (results are bit-for-bit reproducible). The gradients are checked
//! against finite differences in this module's tests.
//!
//! Parameters live in one flat vector per network (each layer's weights, out × in row-major,
//! then its biases), which makes Adam, gradient clipping and checkpoints one loop each.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The hidden layers' non-linearity (the output layer is linear).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh: bounded, the usual choice for small PPO networks.
    Tanh,
    /// max(0, x): the EnergyLLM paper's choice.
    Relu,
}

impl Activation {
    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(0.0),
        }
    }
    /// Derivative expressed through the activation's output `y`.
    fn grad_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Tanh => 1.0 - y * y,
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// A dense network: `sizes[0]` inputs, hidden layers, `sizes[last]` linear outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mlp {
    sizes: Vec<usize>,
    activation: Activation,
    params: Vec<f32>,
}

/// One dense layer of an [`Mlp`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct LayerView<'a> {
    /// Inputs.
    pub fan_in: usize,
    /// Outputs.
    pub fan_out: usize,
    /// `fan_out × fan_in`, row-major.
    pub weights: &'a [f32],
    /// `fan_out` values.
    pub bias: &'a [f32],
}

/// Buffers for one-sample inference, so that a decision allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// Activations of a minibatch kept for the backward pass.
#[derive(Clone, Debug, Default)]
pub struct BatchCache {
    /// `acts[0]` is the input, `acts[l + 1]` the output of layer `l` (after its activation,
    /// except the last).
    acts: Vec<Vec<f32>>,
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

impl Mlp {
    /// A network with the given layer sizes (at least input and output), its weights drawn
    /// uniformly with variance `gain² / fan_in` (LeCun/He scaling; √2 for ReLU hidden layers) and
    /// the output layer's scaled by `output_gain` (small for a policy head, so that the initial
    /// policy is near uniform), biases zero.
    pub fn new(sizes: &[usize], activation: Activation, output_gain: f32, rng: &mut impl Rng) -> Self {
        let hidden_gain = match activation {
            Activation::Tanh => 1.0f32,
            Activation::Relu => std::f32::consts::SQRT_2,
        };
        let mut params = Vec::new();
        for l in 0..sizes.len().saturating_sub(1) {
            let (fan_in, fan_out) = (sizes[l], sizes[l + 1]);
            let gain = if l + 2 == sizes.len() { output_gain } else { hidden_gain };
            let a = gain * (3.0 / fan_in.max(1) as f32).sqrt();
            params.extend((0..fan_in * fan_out).map(|_| rng.gen_range(-a..=a)));
            params.extend(std::iter::repeat_n(0.0, fan_out));
        }
        Mlp { sizes: sizes.to_vec(), activation, params }
    }

    /// Layer sizes, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
    /// The hidden layers' activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Inputs.
    pub fn input_dim(&self) -> usize {
        self.sizes[0]
    }
    /// Outputs.
    pub fn output_dim(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
    /// All parameters, flat.
    pub fn params(&self) -> &[f32] {
        &self.params
    }
    /// All parameters, flat, for an optimiser.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
    /// The number of parameters the sizes call for (a loaded network must have exactly these).
    pub fn expected_params(sizes: &[usize]) -> usize {
        sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }
    /// Whether the shape is consistent (at least two layers, no empty layer, the right number of
    /// finite parameters): checked when a network is loaded from a file.
    pub fn is_consistent(&self) -> bool {
        self.sizes.len() >= 2
            && self.sizes.iter().all(|&s| s > 0)
            && self.params.len() == Self::expected_params(&self.sizes)
            && self.params.iter().all(|p| p.is_finite())
    }

    fn layers(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        // (offset, fan_in, fan_out)
        let mut offset = 0;
        self.sizes.windows(2).map(move |w| {
            let o = offset;
            offset += w[0] * w[1] + w[1];
            (o, w[0], w[1])
        })
    }

    /// Each layer's weights and biases, input layer first (what an exporter writes out).
    pub fn layer_views(&self) -> impl Iterator<Item = LayerView<'_>> + '_ {
        self.layers().map(|(off, fan_in, fan_out)| LayerView {
            fan_in,
            fan_out,
            weights: &self.params[off..off + fan_in * fan_out],
            bias: &self.params[off + fan_in * fan_out..off + fan_in * fan_out + fan_out],
        })
    }

    /// One sample's outputs; `x` has `input_dim` values. Allocation-free once `scratch` has grown.
    pub fn forward<'s>(&self, x: &[f32], scratch: &'s mut Scratch) -> &'s [f32] {
        let n_layers = self.sizes.len() - 1;
        scratch.a.clear();
        scratch.a.extend_from_slice(x);
        for (l, (off, fan_in, fan_out)) in self.layers().enumerate() {
            let w = &self.params[off..off + fan_in * fan_out];
            let b = &self.params[off + fan_in * fan_out..off + fan_in * fan_out + fan_out];
            scratch.b.clear();
            for o in 0..fan_out {
                let z = dot(&w[o * fan_in..(o + 1) * fan_in], &scratch.a) + b[o];
                scratch.b.push(if l + 1 < n_layers { self.activation.apply(z) } else { z });
            }
            std::mem::swap(&mut scratch.a, &mut scratch.b);
        }
        &scratch.a
    }

    /// Outputs of `n` samples (`x` is `n × input_dim`, row-major), keeping what
    /// [`backward`](Self::backward) needs. Returns `n × output_dim` values.
    pub fn forward_batch<'c>(&self, x: &[f32], n: usize, cache: &'c mut BatchCache) -> &'c [f32] {
        let n_layers = self.sizes.len() - 1;
        cache.acts.resize_with(n_layers + 1, Vec::new);
        cache.acts[0].clear();
        cache.acts[0].extend_from_slice(&x[..n * self.sizes[0]]);
        for (l, (off, fan_in, fan_out)) in self.layers().enumerate() {
            let w = &self.params[off..off + fan_in * fan_out];
            let b = &self.params[off + fan_in * fan_out..off + fan_in * fan_out + fan_out];
            let (before, after) = cache.acts.split_at_mut(l + 1);
            let (input, out) = (&before[l], &mut after[0]);
            out.clear();
            out.reserve(n * fan_out);
            for s in 0..n {
                let xs = &input[s * fan_in..(s + 1) * fan_in];
                for o in 0..fan_out {
                    let z = dot(&w[o * fan_in..(o + 1) * fan_in], xs) + b[o];
                    out.push(if l + 1 < n_layers { self.activation.apply(z) } else { z });
                }
            }
        }
        &cache.acts[n_layers]
    }

    /// Adds to `grad` (same layout as the parameters) the gradient of Σ dout · output over the
    /// batch of the last [`forward_batch`](Self::forward_batch); `dout` is `n × output_dim`.
    pub fn backward(&self, cache: &mut BatchCache, n: usize, dout: &[f32], grad: &mut [f32]) {
        let layers: Vec<(usize, usize, usize)> = self.layers().collect();
        let n_layers = layers.len();
        cache.delta.clear();
        cache.delta.extend_from_slice(&dout[..n * self.output_dim()]);
        for l in (0..n_layers).rev() {
            let (off, fan_in, fan_out) = layers[l];
            let w = &self.params[off..off + fan_in * fan_out];
            let input = &cache.acts[l];
            let (gw, gb) = grad[off..off + fan_in * fan_out + fan_out].split_at_mut(fan_in * fan_out);
            for s in 0..n {
                let d = &cache.delta[s * fan_out..(s + 1) * fan_out];
                let xs = &input[s * fan_in..(s + 1) * fan_in];
                for o in 0..fan_out {
                    if d[o] != 0.0 {
                        axpy(d[o], xs, &mut gw[o * fan_in..(o + 1) * fan_in]);
                        gb[o] += d[o];
                    }
                }
            }
            if l == 0 {
                break;
            }
            cache.delta_prev.clear();
            cache.delta_prev.resize(n * fan_in, 0.0);
            for s in 0..n {
                let d = &cache.delta[s * fan_out..(s + 1) * fan_out];
                let dp = &mut cache.delta_prev[s * fan_in..(s + 1) * fan_in];
                for o in 0..fan_out {
                    if d[o] != 0.0 {
                        axpy(d[o], &w[o * fan_in..(o + 1) * fan_in], dp);
                    }
                }
                // Through the previous layer's activation (its output is this layer's input).
                for (v, &y) in dp.iter_mut().zip(&input[s * fan_in..(s + 1) * fan_in]) {
                    *v *= self.activation.grad_from_output(y);
                }
            }
            std::mem::swap(&mut cache.delta, &mut cache.delta_prev);
        }
    }
}

/// Adam (Kingma & Ba) over one flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    /// Step size.
    pub lr: f32,
    /// First-moment decay. Default 0.9.
    pub beta1: f32,
    /// Second-moment decay. Default 0.999.
    pub beta2: f32,
    /// Denominator floor. Default 1e-5 (what Stable-Baselines3's PPO uses).
    pub eps: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    /// An optimiser for `n` parameters.
    pub fn new(n: usize, lr: f32) -> Self {
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-5, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One step against the gradient.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.t = self.t.saturating_add(1);
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        let step = self.lr * c2.sqrt() / c1;
        for i in 0..params.len() {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * grad[i];
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * grad[i] * grad[i];
            params[i] -= step * self.m[i] / (self.v[i].sqrt() + self.eps * c2.sqrt());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn loss(net: &Mlp, x: &[f32], n: usize, w: &[f32]) -> f64 {
        let mut c = BatchCache::default();
        net.forward_batch(x, n, &mut c).iter().zip(w).map(|(y, w)| f64::from(*y) * f64::from(*w)).sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for act in [Activation::Tanh, Activation::Relu] {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut net = Mlp::new(&[5, 11, 9, 3], act, 1.0, &mut rng);
            let n = 4;
            let x: Vec<f32> = (0..n * 5).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * 3).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let mut cache = BatchCache::default();
            net.forward_batch(&x, n, &mut cache);
            let mut grad = vec![0.0; net.params().len()];
            net.backward(&mut cache, n, &w, &mut grad);
            let h = 1e-3f32;
            let mut worst = 0.0f64;
            for i in (0..grad.len()).step_by(3) {
                let p = net.params()[i];
                net.params_mut()[i] = p + h;
                let up = loss(&net, &x, n, &w);
                net.params_mut()[i] = p - h;
                let down = loss(&net, &x, n, &w);
                net.params_mut()[i] = p;
                let numeric = (up - down) / (2.0 * f64::from(h));
                worst = worst.max((numeric - f64::from(grad[i])).abs() / (1.0 + numeric.abs()));
            }
            assert!(worst < 2e-2, "{act:?}: worst relative gradient error {worst}");
        }
    }

    #[test]
    fn one_sample_and_batch_forward_agree() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = Mlp::new(&[7, 16, 4], Activation::Tanh, 1.0, &mut rng);
        let x: Vec<f32> = (0..14).map(|i| i as f32 / 10.0 - 0.5).collect();
        let mut cache = BatchCache::default();
        let batch = net.forward_batch(&x, 2, &mut cache).to_vec();
        let mut s = Scratch::default();
        assert_eq!(net.forward(&x[7..], &mut s), &batch[4..]);
        assert_eq!(Mlp::expected_params(&[7, 16, 4]), net.params().len());
        assert!(net.is_consistent());
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut p = vec![3.0f32, -2.0];
        let mut adam = Adam::new(2, 0.1);
        for _ in 0..500 {
            let g: Vec<f32> = p.iter().map(|x| 2.0 * x).collect();
            adam.step(&mut p, &g);
        }
        assert!(p.iter().all(|x| x.abs() < 0.05), "{p:?}");
    }
}
