use std::process::ExitCode;

use atrium_services::operator;

use super::CommandResult;
use crate::cli::JsonArg;
use crate::connect::Connected;
use crate::output::print_json;

pub async fn run(args: JsonArg, connected: &Connected) -> CommandResult {
    let totals = operator::totals(&connected.fleet()).await?;
    if args.json {
        print_json(&totals)?;
    } else {
        println!("tenants     {}", totals.tenant_count);
        println!("users       {}", totals.total_users);
        println!("companies   {}", totals.total_companies);
        println!("contacts    {}", totals.total_contacts);
        println!("deals       {}", totals.total_deals);
        println!("activities  {}", totals.total_activities);
    }
    Ok(ExitCode::SUCCESS)
}
