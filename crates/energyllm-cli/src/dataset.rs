//! `energyllm dataset …`: process raw conversation datasets into request lengths, summarise a
//! length file or trace, list the bundled workloads.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use energyllm_bench::plots::length_histogram_svg;
use energyllm_workload::bundled::{BundledKind, BUNDLED};
use energyllm_workload::raw_dataset::{process_file, OutputArrivals, ProcessOptions, RawFormat, Turns};
use energyllm_workload::stats::DatasetStats;
use energyllm_workload::tokenize::{Tokenizer, DEFAULT_ENCODING};
use energyllm_workload::{bundled, ReadOptions, TraceFormat};

use crate::args::named_value;

/// `energyllm dataset` subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum DatasetCommand {
    /// Turn a raw conversation dataset (ShareGPT, LMSYS-Chat-1M, WildChat, generic JSON lines)
    /// into {"input_len", "output_len"} JSON lines, counting tokens with a real tokenizer.
    Process(ProcessArgs),
    /// Count, mean/median/p90/p99 of input and output lengths, arrival rate and burstiness of a
    /// length file or trace (any supported format, or a bundled name); optionally an SVG histogram.
    Stats(StatsArgs),
    /// List the bundled workloads (usable wherever a file is expected).
    List,
}

/// Arguments of `dataset process`.
#[derive(Args, Clone, Debug)]
pub struct ProcessArgs {
    /// Input format: ShareGPT (one JSON array), LMSYS-Chat-1M or WildChat JSON lines, or generic
    /// JSON lines (`messages`/`conversation(s)` lists, or `prompt` with `response`).
    #[arg(long, value_parser = named_value(&RawFormat::ALL, RawFormat::name))]
    pub format: RawFormat,
    /// The raw dataset file (a `.parquet` file is read row by row with the `parquet` feature).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the JSON lines.
    #[arg(long)]
    pub output: PathBuf,
    /// Tokenizer: a built-in encoding (cl100k_base, o200k_base, p50k_base, r50k_base) or the path
    /// of a HuggingFace tokenizer.json (needs the `hf-tokenizer` feature).
    #[arg(long, default_value = DEFAULT_ENCODING)]
    pub tokenizer: String,
    /// Which user turns become requests.
    #[arg(long, default_value_t = Turns::First, value_parser = named_value(&Turns::ALL, Turns::name))]
    pub turns: Turns,
    /// Count the earlier messages of the conversation in each prompt (as a chat server sends it).
    #[arg(long)]
    pub with_history: bool,
    /// Keep only conversations whose `language` field is this (e.g. English; case-insensitive).
    #[arg(long)]
    pub language: Option<String>,
    /// Shortest prompt kept, in tokens.
    #[arg(long, default_value_t = 1)]
    pub min_input: u32,
    /// Longest prompt kept, in tokens.
    #[arg(long)]
    pub max_input: Option<u32>,
    /// Shortest answer kept, in tokens.
    #[arg(long, default_value_t = 1)]
    pub min_output: u32,
    /// Longest answer kept, in tokens.
    #[arg(long)]
    pub max_output: Option<u32>,
    /// Count and skip bad records instead of stopping at the first one.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Write an `id` (conversation id:turn) on each line.
    #[arg(long)]
    pub with_id: bool,
    /// Write Poisson `arrival_s` times at this rate (requests per second), seeded by --seed.
    #[arg(long, conflicts_with = "arrival_from_timestamps")]
    pub arrival_rate: Option<f64>,
    /// Seed for --arrival-rate.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the dataset's own timestamps as `arrival_s` (WildChat), in seconds since 1970.
    #[arg(long)]
    pub arrival_from_timestamps: bool,
    /// Stop after writing this many requests.
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Arguments of `dataset stats`.
#[derive(Args, Clone, Debug)]
pub struct StatsArgs {
    /// A length file or trace, or a bundled name (`energyllm dataset list`).
    pub file: String,
    /// The file's format (default: detected from its content).
    #[arg(long, value_parser = named_value(&TraceFormat::ALL, TraceFormat::name))]
    pub format: Option<TraceFormat>,
    /// Count and skip bad lines instead of stopping at the first one.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Write histograms of the input and output lengths to this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `dataset` subcommand.
pub fn run_dataset(cmd: &DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Process(args) => run_process(args),
        DatasetCommand::Stats(args) => run_stats(args),
        DatasetCommand::List => {
            for b in BUNDLED {
                let kind = match b.kind {
                    BundledKind::Lengths => "lengths",
                    BundledKind::Trace => "trace",
                };
                println!("{:<24} {:<8} {}", b.name, kind, b.description);
            }
            Ok(())
        }
    }
}

fn run_process(args: &ProcessArgs) -> anyhow::Result<()> {
    let tokenizer = Tokenizer::from_spec(&args.tokenizer)?;
    let arrivals = match (args.arrival_rate, args.arrival_from_timestamps) {
        (Some(rate_rps), _) => OutputArrivals::Poisson { rate_rps, seed: args.seed },
        (None, true) => OutputArrivals::Timestamps,
        (None, false) => OutputArrivals::None,
    };
    let opts = ProcessOptions {
        format: args.format,
        turns: args.turns,
        with_history: args.with_history,
        language: args.language.clone(),
        min_input: args.min_input,
        max_input: args.max_input,
        min_output: args.min_output,
        max_output: args.max_output,
        skip_invalid: args.skip_invalid,
        with_id: args.with_id,
        arrivals,
        limit: args.limit,
    };
    let report = process_file(&args.input, &args.output, &tokenizer, &opts)
        .with_context(|| format!("processing {}", args.input.display()))?;
    println!("{report}");
    println!("wrote {} (tokens counted with {})", args.output.display(), tokenizer.name());
    if report.written == 0 {
        anyhow::bail!("no request passed the filters; loosen --language or the length limits");
    }
    Ok(())
}

fn run_stats(args: &StatsArgs) -> anyhow::Result<()> {
    let opts = ReadOptions { format: args.format, skip_invalid: args.skip_invalid };
    let path = std::path::Path::new(&args.file);
    let stats = match bundled::find(&args.file).filter(|_| !path.exists()) {
        Some(b) => DatasetStats::read(b.contents.as_bytes(), std::path::Path::new(b.name), &opts)?,
        None => {
            let file = std::fs::File::open(path).with_context(|| {
                format!("cannot open {} (bundled names: {})", path.display(), bundled::names())
            })?;
            DatasetStats::read(std::io::BufReader::new(file), path, &opts)?
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
    } else {
        write!(out, "{}", stats.to_text())?;
    }
    if let Some(svg) = &args.svg {
        std::fs::write(svg, length_histogram_svg(&stats.name, &stats.input_lens, &stats.output_lens))
            .with_context(|| format!("writing {}", svg.display()))?;
        if !args.json {
            writeln!(out, "wrote {}", svg.display())?;
        }
    }
    Ok(())
}
