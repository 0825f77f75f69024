//! What compliance asks of a session: a dual recording's scripted steps
//! during the recorded call and their review after it, the customer's face
//! verified during the call, QA evaluations, and retention's deletions and
//! erasure once it ended.

use witness_schemas::*;

use super::{Phase, Session, SessionCommand as C, SessionState};
use crate::{refusal, DomainError};

pub(super) fn decide(state: &SessionState, command: C) -> Result<Vec<Event>, DomainError> {
    let name = command.name();
    let invalid = |refusal| Err(DomainError::Invalid(refusal));
    let events: Vec<Event> = match (&state.phase, command) {
        (Phase::InCall { call, .. }, C::StartStep { step, steps }) => {
            if call.recording.is_none() {
                return invalid(refusal!(
                    "step_needs_recording",
                    "a dual-recording step runs while the call is recorded"
                ));
            }
            let expected = match &state.dual {
                Some(d) if d.script_id != step.script_id || d.version != step.script_version => {
                    return invalid(refusal!(
                        "other_script",
                        "this session follows script {script} v{version}",
                        script = d.script_id,
                        version = d.version
                    ))
                }
                Some(d) if d.open.is_some() => {
                    return invalid(refusal!("step_still_open", "the open step must be completed first"))
                }
                Some(d) => d.done.len() as u32,
                None => 0,
            };
            if step.step_index != expected || step.step_index >= steps {
                return invalid(refusal!(
                    "wrong_step",
                    "the next step is {expected} of {steps}, not {got}",
                    expected = expected,
                    steps = steps,
                    got = step.step_index
                ));
            }
            vec![step.into()]
        }
        (Phase::InCall { .. }, C::CompleteStep { step }) => {
            let open = state.dual.as_ref().and_then(|d| {
                (d.script_id == step.script_id && d.version == step.script_version).then_some(d.open).flatten()
            });
            if open != Some(step.step_index) {
                return invalid(refusal!(
                    "not_the_open_step",
                    "step {step} is not the open step",
                    step = step.step_index
                ));
            }
            vec![step.into()]
        }
        (Phase::InCall { call, .. }, C::RequestFaceVerification { request }) => {
            if let Some(open) = call.face_verification {
                return invalid(refusal!("face_check_open", "face verification {open} is still open", open = open));
            }
            vec![request.into()]
        }
        (Phase::InCall { call, .. }, C::CompleteFaceVerification { result }) => {
            if call.face_verification != Some(result.verification_id) {
                return invalid(refusal!(
                    "not_the_open_face_check",
                    "face verification {id} is not the open one",
                    id = result.verification_id
                ));
            }
            vec![(*result).into()]
        }
        (Phase::WrapUp { .. } | Phase::Closed { .. }, C::ReviewStep { review }) => {
            let Some(dual) = &state.dual else {
                return invalid(refusal!("no_dual_recording", "the session has no dual recording"));
            };
            if dual.verdict.is_some() {
                return invalid(refusal!("review_closed", "the review is closed: its verdict was given"));
            }
            if dual.script_id != review.script_id
                || dual.version != review.script_version
                || !dual.done.iter().any(|(i, _)| *i == review.step_index)
            {
                return invalid(refusal!(
                    "step_not_completed",
                    "step {step} was not completed in this session",
                    step = review.step_index
                ));
            }
            vec![review.into()]
        }
        (Phase::WrapUp { .. } | Phase::Closed { .. }, C::Review { verdict }) => {
            let Some(dual) = &state.dual else {
                return invalid(refusal!("no_dual_recording", "the session has no dual recording"));
            };
            if dual.verdict.is_some() {
                return invalid(refusal!("verdict_given", "the verdict was already given"));
            }
            if let Some((i, _)) = dual.done.iter().find(|(i, _)| !dual.step_reviews.contains_key(i)) {
                return invalid(refusal!("step_not_reviewed", "step {step} is not reviewed yet", step = i + 1));
            }
            if verdict.passed && dual.step_reviews.values().any(|passed| !passed) {
                return invalid(refusal!("failed_step_cannot_pass", "a recording with a failed step cannot pass"));
            }
            vec![verdict.into()]
        }
        (Phase::WrapUp { .. } | Phase::Closed { .. }, C::RecordDeletion { deleted }) => vec![deleted.into()],
        (Phase::WrapUp { .. } | Phase::Closed { .. }, C::RecordErasure { erased }) => {
            if state.erased {
                return invalid(refusal!("already_erased", "the session's personal data is already erased"));
            }
            vec![erased.into()]
        }
        (Phase::WrapUp { .. } | Phase::Closed { .. }, C::Evaluate { evaluation }) => {
            if state.session_id != Some(evaluation.session_id) {
                return invalid(refusal!("evaluation_other_session", "the evaluation names another session"));
            }
            let scores_ok = evaluation.criteria.iter().all(|c| c.score.is_finite() && c.score >= 0.0 && c.weight > 0.0);
            let total: f64 = evaluation.criteria.iter().map(|c| c.weight * c.score).sum();
            if evaluation.criteria.is_empty()
                || !scores_ok
                || !evaluation.max_score.is_finite()
                || evaluation.max_score <= 0.0
                || (total - evaluation.total_score).abs() > 1e-6
                || evaluation.total_score > evaluation.max_score + 1e-6
            {
                return invalid(refusal!(
                    "evaluation_scores",
                    "an evaluation scores at least one criterion, each from 0, and its total is their weighted sum \
                     within its maximum"
                ));
            }
            vec![evaluation.into()]
        }
        _ => return Err(Session::refuse(state, name)),
    };
    Ok(events)
}
