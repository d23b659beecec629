use std::process::ExitCode;

use atrium_services::operator;

use super::CommandResult;
use crate::cli::OutboxArgs;
use crate::connect::Connected;
use crate::output::print_json;

pub async fn run(args: OutboxArgs, connected: &Connected) -> CommandResult {
    let emails = operator::outbox(&connected.db, args.limit).await?;
    if args.json {
        print_json(&emails)?;
        return Ok(ExitCode::SUCCESS);
    }
    if emails.is_empty() {
        println!("the outbox is empty");
    }
    for email in &emails {
        let state = match email.sent_at {
            Some(at) => format!("sent {}", at.to_rfc3339()),
            None => "queued".to_owned(),
        };
        println!(
            "#{} {} to {} ({}, {}, {})\nSubject: {}\n\n{}\n",
            email.id,
            email.kind,
            email.to,
            email.tenant.as_deref().unwrap_or("-"),
            email.created_at.to_rfc3339(),
            state,
            email.subject,
            email.body.trim_end()
        );
    }
    Ok(ExitCode::SUCCESS)
}
