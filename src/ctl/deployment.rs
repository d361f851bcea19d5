//! The deployment commands of `warren ctl`: `deployment init` (the first partition map)
//! and `map show`, thin over `warren_client::admin`, plus the parsing of their `--cell`
//! arguments.

use warren_client::{admin, Session};
use warren_router::PartitionMap;

use super::failure::Failure;
use super::output::{self, Output};

/// The `--cell NAME=HOST:PORT[,HOST:PORT…]` arguments, in order.
pub(crate) fn parse_cells(args: &[String]) -> Result<Vec<(String, Vec<String>)>, Failure> {
    args.iter()
        .map(|arg| {
            let Some((name, addrs)) = arg.split_once('=') else {
                return Err(Failure::invalid(format!(
                    "--cell {arg:?} has no '='; write NAME=HOST:PORT[,HOST:PORT…], e.g. a=10.0.0.1:7000"
                )));
            };
            let addrs = addrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            Ok((name.trim().to_owned(), addrs))
        })
        .collect()
}

/// The first map of `deployment`, checked ([`admin::initial_map`]); an invalid cell name,
/// address or slot count is INVALID_ARGUMENT, naming it.
pub(crate) fn initial_map(
    deployment: &str,
    cells: &[(String, Vec<String>)],
    slots: u32,
) -> Result<PartitionMap, Failure> {
    Ok(admin::initial_map(deployment, cells, slots)?)
}

/// `deployment init`: writes the first map, exclusively, into the meta cell.
pub(crate) async fn init(
    session: &Session,
    cells: &[(String, Vec<String>)],
    slots: u32,
    out: Output,
) -> Result<(), Failure> {
    let map = admin::write_initial_map(session, cells, slots).await?;
    if out.json {
        output::print_line(&map.to_json())
    } else {
        output::print_line(&output::initialised_text(&map))
    }
}

/// `map show`: reads and checks the map; prints it, or its stored JSON.
pub(crate) async fn show(session: &Session, out: Output) -> Result<(), Failure> {
    let (map, stored) = admin::read_map(session).await?;
    if out.json {
        output::print_line(stored.trim_end())
    } else {
        output::print_line(&output::map_text(&map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_parse_and_the_map_checks_them() {
        let cells = parse_cells(&["a=h:1, h:2".into(), "b=h:3".into()]).expect("parses");
        assert_eq!(
            cells,
            vec![
                ("a".to_owned(), vec!["h:1".to_owned(), "h:2".to_owned()]),
                ("b".to_owned(), vec!["h:3".to_owned()])
            ]
        );
        let f = parse_cells(&["a:h:1".into()]).expect_err("no =");
        assert_eq!(f.code, "INVALID_ARGUMENT");
        assert!(f.message.contains("\"a:h:1\""), "{}", f.message);
        for (cells, names) in [
            (vec!["a=nope"], "\"nope\""),
            (vec!["a=h:1", "a=h:2"], "\"a\" is listed twice"),
            (vec!["A=h:1"], "\"A\""),
            (vec!["a="], "no replica addresses"),
        ] {
            let cells: Vec<String> = cells.into_iter().map(str::to_owned).collect();
            let f = initial_map("d", &parse_cells(&cells).unwrap(), 8).expect_err("invalid");
            assert_eq!(f.code, "INVALID_ARGUMENT");
            assert!(f.message.contains(names), "{}", f.message);
        }
        let f = initial_map("d", &parse_cells(&["a=h:1".into()]).unwrap(), 0).expect_err("0");
        assert!(f.message.contains("0 slots"), "{}", f.message);
    }
}
