//! A batch inference job as the fleet keeps it (see `batch`).

use serde::Serialize;
use serde_json::Value;

/// One job, as `GetModelInvocationJob` describes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_arn: String,
    pub job_name: String,
    pub model_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
    pub role_arn: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub submit_time: String,
    pub last_modified_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub input_data_config: Value,
    pub output_data_config: Value,
    pub model_invocation_type: String,
    pub timeout_duration_in_hours: u64,
    pub total_record_count: u64,
    pub processed_record_count: u64,
    pub success_record_count: u64,
    pub error_record_count: u64,
    #[serde(skip)]
    pub region: String,
    #[serde(skip)]
    pub stop: bool,
}

impl Job {
    pub fn id(&self) -> &str {
        self.job_arn.rsplit('/').next().unwrap_or_default()
    }

    pub fn terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Completed" | "PartiallyCompleted" | "Failed" | "Stopped" | "Expired"
        )
    }
}
