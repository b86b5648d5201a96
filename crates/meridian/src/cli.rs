//! Command-line definitions (clap only; behaviour lives in `cmd/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Meridian: a region-aware inference gateway for Amazon Bedrock.
#[derive(Debug, Parser)]
#[command(name = "meridian", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by commands that read the config.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file (default: the TOML text in MERIDIAN_CONFIG_TOML when set,
    /// else ./meridian.toml when present, else built-in defaults).
    #[arg(long, short = 'c', env = "MERIDIAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Machine-readable output.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on.
        #[arg(long, env = "MERIDIAN_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Seed of the in-process simulated fleet, when one is used.
        #[arg(long, default_value_t = 1)]
        sim_seed: u64,
        /// On SIGTERM, answer `/ready` with 503 and keep serving this many
        /// seconds before the listener closes (load balancers stop sending
        /// first); then requests under way get up to 30 s to finish.
        #[arg(long, env = "MERIDIAN_DRAIN_DELAY_S", default_value_t = 0)]
        drain_delay_s: u64,
        /// Let a config reload lower the security posture (remove tenants,
        /// `[auth]` or `[admin]`, widen residency, drop guards); without it
        /// such a file is refused until a restart.
        #[arg(long, env = "MERIDIAN_ALLOW_WEAKER_RELOAD")]
        allow_weaker_reload: bool,
    },
    /// Run a simulated Bedrock region fleet on 127.0.0.1.
    Sim(SimArgs),
    /// Rehearse a regional failure: the gateway and the simulated fleet run
    /// in-process under open-loop load while the scenario's faults are applied.
    Drill(DrillArgs),
    /// List AWS regions, their geography and Bedrock availability.
    Regions {
        /// Only regions of this geography or zone (us, eu, apac, jp, au, ...).
        #[arg(long)]
        geo: Option<String>,
        /// Only regions that serve Bedrock.
        #[arg(long)]
        bedrock: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show the ordered targets a model resolves to from a region.
    Resolve {
        /// Exposed model name, catalog alias, model or profile ID, or ARN.
        model: String,
        /// Source region (default: from the config, else detected).
        #[arg(long, short = 'r')]
        region: Option<String>,
        /// Only allow these geographies, zones or regions (comma-separated), e.g. eu or ca-central-1.
        #[arg(long, value_delimiter = ',')]
        allow: Vec<String>,
        /// Never allow these geographies, zones or regions (comma-separated).
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Detect the AWS region Meridian runs in, and say which step answered.
    Detect {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Print a least-privilege IAM policy for every target the config may call.
    IamPolicy {
        /// Source region (default: from the config, else detected).
        #[arg(long, short = 'r')]
        region: Option<String>,
        /// Account ID for inference-profile ARNs (default: any account, `*`).
        #[arg(long, default_value = "*")]
        account: String,
        #[command(flatten)]
        config: ConfigArg,
        /// `json`: the policy document; `cloudformation`: an entry for an
        /// `AWS::IAM::Role`'s `Policies` (name and document), as
        /// deploy/aws/meridian.yaml carries it.
        #[arg(long, value_enum, default_value_t = PolicyFormat::Json)]
        format: PolicyFormat,
        /// Accepted for symmetry; the policy is always JSON.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Check config, region and models; say what is wrong and how to fix it.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Make API keys for tenants (only their hashes go into the config).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// What changes when this config is served from another region: targets,
    /// destinations, distance, prices, IAM, partition, the log bucket. Exit 1
    /// when a model would become unservable (or, with strict_residency, a
    /// policy would be served from outside it).
    PlanMigration {
        /// The region to move to.
        #[arg(long)]
        to: String,
        /// The region it runs in now (default: from the config, else detected).
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Ask a running gateway for `/ready` (the container health check: the
    /// image has no shell or curl). Exit 0 on a 2xx answer, 1 otherwise.
    Probe {
        /// The gateway's listen address; 0.0.0.0 and [::] are asked on loopback.
        #[arg(long, env = "MERIDIAN_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Path to GET (`/health`: the process answers; `/ready`: it can serve).
        #[arg(long, default_value = "/ready")]
        path: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Compare the compiled catalog with Bedrock's control plane.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

/// What `meridian iam-policy` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyFormat {
    /// An IAM policy document.
    Json,
    /// `{"PolicyName", "PolicyDocument"}` for a CloudFormation role's `Policies`.
    Cloudformation,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Read ListInferenceProfiles in every region the config may call and
    /// list what confirms, adds to or contradicts the compiled catalog. Exit
    /// 0: nothing contradicts; 1: something does; 2: no region could be read.
    Diff {
        #[command(flatten)]
        config: ConfigArg,
        /// List confirmed profiles too.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List the catalog's models with where each fact came from (the
    /// compiled entry's sources and date, or the refresh that found it);
    /// `--refresh` reads Bedrock's control plane first, as `serve` does, so
    /// models Bedrock lists that the compiled catalog lacks are listed too.
    Models {
        #[command(flatten)]
        config: ConfigArg,
        /// Read ListFoundationModels and ListInferenceProfiles first.
        #[arg(long)]
        refresh: bool,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key once, and the config line with its hash.
    Create {
        /// The tenant the key is for (`[tenants.NAME]`), or `admin` for `[admin] key_hash`.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Print the hash of a key read from standard input.
    Hash,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file.
    Check {
        /// The file to check.
        file: PathBuf,
        #[command(flatten)]
        json: JsonArg,
    },
}

/// Flags of `meridian sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Regions to simulate (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "us-east-1,us-west-2,eu-west-1"
    )]
    pub regions: Vec<String>,
    /// Seed for every random choice; the same seed and scenario repeat exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scenario file (JSON): latency, capacity and scheduled faults.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Write the manifest (region → URL, control URL, credential) to this file.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Port of the control API (default: any free port).
    #[arg(long)]
    pub control_port: Option<u16>,
    /// Take the application inference profiles declared in this meridian.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The S3-compatible server batch inference jobs read and write
    /// (`http://127.0.0.1:9000`); without one the fleet refuses batch jobs.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// How long a batch inference job takes from submission to its end, ms.
    #[arg(long, default_value_t = 3000)]
    pub batch_job_ms: u64,
    /// Print the manifest as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `meridian drill`.
#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// The scenario to rehearse.
    #[arg(value_enum)]
    pub scenario: DrillScenario,
    /// Requests per second, open loop (half Converse, half ConverseStream).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of load; the fault schedule scales with it.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Tokens each request may generate.
    #[arg(long, default_value_t = 48)]
    pub max_tokens: u32,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML report with the timeline as charts.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// The scenarios `meridian drill` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrillScenario {
    /// The primary region is hard down for 30 s: connections refused, new
    /// requests on open connections refused, responses under way drained for 2 s.
    RegionOutage,
    /// The primary region adds 2 s before the first token for 30 s.
    Brownout,
    /// The primary region's quota is cut to 20 % for 30 s.
    ThrottleStorm,
    /// The primary region goes down and up every 3 s for 30 s.
    Flapping,
    /// EU-only traffic while every EU region fails, one every 5 s.
    ResidencySqueeze,
    /// Provisioned throughput carries the baseline (half the rate); a burst
    /// to three times the baseline for 30 s overflows to on-demand.
    ProvisionedOverflow,
}

impl DrillScenario {
    /// Name as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillScenario::RegionOutage => "region-outage",
            DrillScenario::Brownout => "brownout",
            DrillScenario::ThrottleStorm => "throttle-storm",
            DrillScenario::Flapping => "flapping",
            DrillScenario::ResidencySqueeze => "residency-squeeze",
            DrillScenario::ProvisionedOverflow => "provisioned-overflow",
        }
    }
}
