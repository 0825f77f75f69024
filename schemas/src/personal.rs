//! Personal data in payloads, and who may see it.
//!
//! Events keep personal data (what customers wrote, their visitor
//! reference, file names) so that the people entitled to it can read it.
//! Everyone else sees those fields masked: [`mask_personal`] is the one
//! place that knows which fields they are.

use serde_json::Value;

/// What a user is to Witness. (Accounts arrive with the API; the masking
/// rules need the roles now.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Agent,
    Supervisor,
    Compliance,
    Admin,
}

impl Role {
    /// Whether this role reads personal fields unmasked. Compliance officers
    /// replay full audit trails; admins run the deployment. Supervisors and
    /// agents see the audit trail masked (agents see their own conversations
    /// in the workbench, not through the audit trail).
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Role::Compliance | Role::Admin)
    }
}

/// Payload fields that can carry personal data: free text written by or
/// about a customer, the customer's reference, names of files they sent.
pub const PERSONAL_FIELDS: &[&str] = &[
    "customer_ref",
    "text",
    "markdown",
    "caption",
    "file_name",
    "comment",
    "description",
    "title",
    "context_summary",
    "notes",
    "login",
    "display_name",
];

/// What a masked field reads.
pub const MASK: &str = "•••";

/// Replaces every string in a personal field, at any depth, with [`MASK`].
pub fn mask_personal(payload: &mut Value) {
    match payload {
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                if PERSONAL_FIELDS.contains(&key.as_str()) && value.is_string() {
                    *value = Value::from(MASK);
                } else {
                    mask_personal(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_personal),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::one_of_each;

    #[test]
    fn masking_removes_what_customers_wrote_and_keeps_the_rest() {
        for event in one_of_each() {
            let mut payload = event.payload();
            let before = payload.to_string();
            mask_personal(&mut payload);
            let after = payload.to_string();
            for secret in [
                "信用卡年费",
                "visitor-7f3a",
                "bill.png",
                "很快",
                "Dispute on annual fee",
                "账单明细",
                "li.na",
                "Li Na",
            ] {
                assert!(!after.contains(secret), "{} still shows {secret:?}: {after}", event.event_type());
            }
            // Ids, kinds and numbers survive.
            if before.contains("session_id") {
                assert!(after.contains("session_id"));
            }
        }
    }

    #[test]
    fn only_compliance_and_admin_see_personal_data() {
        assert!(Role::Compliance.sees_personal_data() && Role::Admin.sees_personal_data());
        assert!(!Role::Agent.sees_personal_data() && !Role::Supervisor.sees_personal_data());
        assert!(!Role::Customer.sees_personal_data());
    }
}
