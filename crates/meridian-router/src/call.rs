//! How one candidate is called: the model ID the path names, and where its
//! service tier and its region's Bedrock guardrail go. Decided from plain
//! data, the same way for every front door; the gateway only writes the
//! bytes and headers this says.

use meridian_catalog::ServiceTier;
use meridian_wire::Action;

use crate::route::Candidate;

/// Where the candidate's service tier goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierIn {
    /// Nowhere: the candidate asks for no tier (the client's own stands).
    Nowhere,
    /// The body prepared with `serviceTier` set (Converse).
    Body(ServiceTier),
    /// The `x-amzn-bedrock-service-tier` header (InvokeModel).
    Header(ServiceTier),
}

/// Where the region's guardrail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardrailIn {
    /// No guardrail is mapped for this model in this region.
    Nowhere,
    /// The path names it (ApplyGuardrail): see [`CallShape::model_id`].
    Path,
    /// Converse's `guardrailConfig`.
    Body,
    /// InvokeModel's guardrail headers, replacing the client's.
    Headers,
}

/// How to call one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallShape {
    /// The model ID (or ARN, or `GUARDRAIL:VERSION` for ApplyGuardrail) in
    /// the path.
    pub model_id: String,
    /// Where its service tier goes.
    pub tier: TierIn,
    /// Where its guardrail goes.
    pub guardrail: GuardrailIn,
}

/// The shape of `action`'s call to `c`. `guardrail` is the region's
/// guardrail (`ID:VERSION`) mapped for the candidate's model, if any;
/// `tier_body` says whether a body with the candidate's tier set was
/// prepared (Converse actions have one per tier the model asks for).
pub fn shape(c: &Candidate, action: Action, guardrail: Option<&str>, tier_body: bool) -> CallShape {
    let model_id = match (action, guardrail, &c.target.base_model_id) {
        // ApplyGuardrail calls the region's guardrail.
        (Action::ApplyGuardrail, Some(g), _) => g.to_string(),
        // CountTokens takes a base foundation-model ID, never a profile.
        (Action::CountTokens, _, Some(base)) => base.clone(),
        _ => c.target.model_id.clone(),
    };
    let tier = match c.service_tier {
        None => TierIn::Nowhere,
        Some(t) if tier_body => TierIn::Body(t),
        Some(t) => TierIn::Header(t),
    };
    let guardrail = match guardrail {
        None => GuardrailIn::Nowhere,
        Some(_) if action == Action::ApplyGuardrail => GuardrailIn::Path,
        Some(_) if action.is_converse() => GuardrailIn::Body,
        Some(_) => GuardrailIn::Headers,
    };
    CallShape {
        model_id,
        tier,
        guardrail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::test_candidate;

    fn profile(tier: Option<ServiceTier>) -> Candidate {
        let mut t = test_candidate("us-east-1", "m").target;
        t.model_id = "us.m".into();
        t.base_model_id = Some("m-base".into());
        Candidate::new("a".into(), 0, "m".into(), t, tier)
    }

    #[test]
    fn the_path_names_the_profile_the_base_model_or_the_guardrail() {
        let c = profile(None);
        let id = |a, g| shape(&c, a, g, false).model_id;
        assert_eq!(id(Action::Converse, None), "us.m");
        assert_eq!(id(Action::InvokeStream, Some("g1:2")), "us.m");
        assert_eq!(id(Action::CountTokens, None), "m-base");
        assert_eq!(id(Action::ApplyGuardrail, Some("g1:2")), "g1:2");
    }

    #[test]
    fn a_tier_goes_in_the_prepared_body_or_else_the_header() {
        let flex = profile(Some(ServiceTier::Flex));
        assert_eq!(
            shape(&flex, Action::Converse, None, true).tier,
            TierIn::Body(ServiceTier::Flex)
        );
        assert_eq!(
            shape(&flex, Action::Invoke, None, false).tier,
            TierIn::Header(ServiceTier::Flex)
        );
        assert_eq!(
            shape(&profile(None), Action::Converse, None, true).tier,
            TierIn::Nowhere
        );
    }

    #[test]
    fn a_guardrail_goes_where_each_action_takes_it() {
        let c = profile(None);
        let at = |a| shape(&c, a, Some("g1:2"), false).guardrail;
        assert_eq!(at(Action::Converse), GuardrailIn::Body);
        assert_eq!(at(Action::ConverseStream), GuardrailIn::Body);
        assert_eq!(at(Action::Invoke), GuardrailIn::Headers);
        assert_eq!(at(Action::InvokeStream), GuardrailIn::Headers);
        assert_eq!(at(Action::ApplyGuardrail), GuardrailIn::Path);
        assert_eq!(
            shape(&c, Action::Converse, None, false).guardrail,
            GuardrailIn::Nowhere
        );
    }
}
