//! The appliance's error answers, printed for an operator.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// An error answer from the appliance. Its text is what an operator reads:
/// for a refused batch (`INVALID_ARGUMENT`), the message and one indented
/// line per mistake, `<resource>:<field>: <file>:<line>:<column>: <reason>`.
#[derive(Debug)]
pub struct RpcError(pub Status);

impl From<Status> for RpcError {
    fn from(status: Status) -> Self {
        Self(status)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(&self.0))
    }
}

impl std::error::Error for RpcError {}

/// The text of an error answer.
pub(super) fn render(status: &Status) -> String {
    match status.code() {
        Code::InvalidArgument => refused_batch(status),
        // The message names the expected and the current generation.
        Code::Aborted if !status.message().is_empty() => status.message().to_owned(),
        code => format!("{}: {}", in_words(code), status.message()),
    }
}

/// The message, then each field violation of the BadRequest details.
/// With details, only the message's first line: the server lists the
/// same mistakes in the rest of it for clients that cannot read details.
fn refused_batch(status: &Status) -> String {
    let violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default();
    let message = if violations.is_empty() {
        status.message()
    } else {
        status.message().lines().next().unwrap_or_default()
    };
    let mut text = if message.is_empty() {
        in_words(status.code()).to_owned()
    } else {
        message.to_owned()
    };
    for violation in violations {
        text += &format!("\n  {}: {}", violation.field, violation.description);
    }
    text
}

/// A status code as an operator says it.
fn in_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by this appliance",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    #[test]
    fn a_refused_batch_prints_one_line_per_mistake() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "2 mistakes in the batch; nothing changed",
            ErrorDetails::with_bad_request(vec![
                FieldViolation::new(
                    "GlobalNetworkPolicy/deny-ssh:spec.selector",
                    "policies/ssh.yaml:7:13: unbalanced parenthesis",
                ),
                FieldViolation::new("Tier/security:spec.order", "<stdin>:4:10: must be a number"),
            ]),
        );
        assert_eq!(
            RpcError(status).to_string(),
            "2 mistakes in the batch; nothing changed\n\
             \x20 GlobalNetworkPolicy/deny-ssh:spec.selector: policies/ssh.yaml:7:13: unbalanced parenthesis\n\
             \x20 Tier/security:spec.order: <stdin>:4:10: must be a number"
        );
    }

    #[test]
    fn with_details_only_the_first_line_of_the_message_is_printed() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "1 error(s); nothing was applied\n  x.yaml:5: GlobalNetworkPolicy/a: spec.selector: bad",
            ErrorDetails::with_bad_request(vec![FieldViolation::new(
                "GlobalNetworkPolicy/a:spec.selector",
                "x.yaml:5: bad",
            )]),
        );
        assert_eq!(
            render(&status),
            "1 error(s); nothing was applied\n  GlobalNetworkPolicy/a:spec.selector: x.yaml:5: bad"
        );
    }

    #[test]
    fn a_refused_batch_without_details_prints_its_message() {
        let status = Status::invalid_argument("no files");
        assert_eq!(render(&status), "no files");
    }

    #[test]
    fn a_conflict_prints_the_message_as_is() {
        let status = Status::aborted("expected generation 7, the current generation is 9");
        assert_eq!(
            render(&status),
            "expected generation 7, the current generation is 9"
        );
    }

    #[test]
    fn other_codes_are_named_in_words() {
        let cases = [
            (
                Status::not_found("GlobalNetworkPolicy/allow-web"),
                "not found: GlobalNetworkPolicy/allow-web",
            ),
            (
                Status::unavailable("the appliance is stopping"),
                "unavailable: the appliance is stopping",
            ),
            (
                Status::deadline_exceeded("worker dataplane/1 enforces 6 after 5s"),
                "deadline exceeded: worker dataplane/1 enforces 6 after 5s",
            ),
        ];
        for (status, text) in cases {
            assert_eq!(render(&status), text);
        }
    }

    #[test]
    fn goes_through_anyhow_as_printed_by_main() {
        let e = anyhow::Error::from(RpcError(Status::not_found("Tier/security")));
        assert_eq!(format!("{e:#}"), "not found: Tier/security");
    }
}
