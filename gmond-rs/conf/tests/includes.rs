//! Include handling through an in-memory [`Source`]: globs, order, depth, cycles, errors.

// Test helpers outside #[test] fns: a panic is how they report failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gmond_conf::{parse_str_with, ConfigError, ConfigErrors, LoadOptions, Loaded, MemSource};

fn load(world: &MemSource, text: &str) -> Result<Loaded, ConfigErrors> {
    parse_str_with(text, "main.conf", world, &LoadOptions::default())
}

#[test]
fn glob_matches_are_included_in_name_order_and_later_wins() {
    let world = MemSource::new()
        .with_file("/c/b.conf", "cluster { name = \"b\" }")
        .with_file("/c/a.conf", "cluster { name = \"a\" owner = \"a\" }")
        .with_file("/c/c.txt", "this is not a config")
        .with_file("/c/.x.conf", "broken {");
    let l = load(&world, "include (\"/c/*.conf\")").unwrap();
    assert_eq!(l.config.cluster.name, "b");
    assert_eq!(l.config.cluster.owner, "a");
}

#[test]
fn include_position_matters() {
    let world = MemSource::new().with_file("/i.conf", "host { location = \"inc\" }");
    let before = load(&world, "include (\"/i.conf\") host { location = \"main\" }").unwrap();
    let after = load(&world, "host { location = \"main\" } include (\"/i.conf\")").unwrap();
    assert_eq!(before.config.host.location, "main");
    assert_eq!(after.config.host.location, "inc");
}

#[test]
fn glob_without_directory_part_uses_the_current_directory() {
    let world = MemSource::new().with_file("./local.conf", "cluster { name = \"local\" }");
    let l = load(&world, "include ('*.conf')").unwrap();
    assert_eq!(l.config.cluster.name, "local");
}

#[test]
fn existing_literal_path_with_glob_characters_is_included_as_is() {
    let world = MemSource::new().with_file("/odd[1].conf", "cluster { name = \"odd\" }");
    let l = load(&world, "include (\"/odd[1].conf\")").unwrap();
    assert_eq!(l.config.cluster.name, "odd");
}

#[test]
fn missing_literal_path_is_an_error_and_empty_glob_is_not() {
    let world = MemSource::new();
    assert!(load(&world, "include (\"/none/*.conf\")").is_ok());
    let e = load(&world, "include (\"/none/x.conf\")").unwrap_err();
    assert!(
        matches!(&e.errors[0], ConfigError::MissingInclude { path, .. } if path == "/none/x.conf")
    );
}

#[test]
fn include_depth_is_limited_like_libconfuse() {
    // main.conf -> f1 -> f2 -> ... -> fN
    let chain = |n: usize| {
        let mut w = MemSource::new();
        for i in 1..=n {
            let body = if i < n {
                format!("include (\"/f{}\")", i + 1)
            } else {
                "cluster { name = \"deep\" }".to_string()
            };
            w = w.with_file(format!("/f{i}"), body);
        }
        w
    };
    let ok = load(&chain(10), "include (\"/f1\")").unwrap();
    assert_eq!(ok.config.cluster.name, "deep");
    let e = load(&chain(11), "include (\"/f1\")").unwrap_err();
    assert!(
        matches!(&e.errors[0], ConfigError::IncludeLoop { message, .. } if message.contains("too deeply")),
        "{e}"
    );
}

#[test]
fn cycles_are_reported_even_through_globs() {
    let world = MemSource::new()
        .with_file("/d/a.conf", "include (\"/d/*.conf\")")
        .with_file("/d/b.conf", "cluster { name = \"b\" }");
    let e = load(&world, "include (\"/d/a.conf\")").unwrap_err();
    assert!(e.errors.iter().any(
        |x| matches!(x, ConfigError::IncludeLoop { message, path, .. } if message == "include cycle" && path == "/d/a.conf")
    ), "{e}");
}

#[test]
fn errors_in_included_files_carry_their_own_location() {
    let world = MemSource::new().with_file("/e.conf", "\n\nglobals {\n  nope = 1\n}\n");
    let e = load(&world, "include (\"/e.conf\")").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/e.conf:4:3: no such option 'nope' (in globals)"
    );
}

#[test]
fn unreadable_include_is_an_io_error() {
    // MemSource reports directories as existing, but they cannot be read as files.
    let world = MemSource::new().with_file("/dir/f.conf", "");
    let e = load(&world, "include (\"/dir\")").unwrap_err();
    assert!(
        matches!(&e.errors[0], ConfigError::Io { path, .. } if path == "/dir"),
        "{e}"
    );
}

#[test]
fn env_variables_come_from_the_source() {
    let world = MemSource::new().with_env("GROUP", "239.2.11.99");
    let l = load(
        &world,
        "udp_send_channel { mcast_join = ${GROUP} port = \"${PORT:-8650}\" }",
    )
    .unwrap();
    assert_eq!(l.config.udp_send[0].port, 8650);
    assert_eq!(
        l.config.udp_send[0].target,
        gmond_conf::SendTarget::Multicast("239.2.11.99".parse().unwrap())
    );
}

#[test]
fn top_file_missing_is_an_io_error() {
    let e = gmond_conf::load_with(
        std::path::Path::new("/nope.conf"),
        &MemSource::new(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(&e.errors[0], ConfigError::Io { .. }));
}

#[test]
fn section_locations_follow_the_config_vectors() {
    let world = MemSource::new().with_file(
        "/i.conf",
        "udp_recv_channel { port = 1 }\ncollection_group {\n metric { name = \"a\" }\n metric { name = \"b\" } }",
    );
    let text =
        "udp_recv_channel { port = 2 }\ninclude (\"/i.conf\")\nudp_recv_channel { port = 3 }";
    let l = load(&world, text).unwrap();
    let ports: Vec<u16> = l.config.udp_recv.iter().map(|c| c.port).collect();
    assert_eq!(ports, [2, 1, 3]);
    let at: Vec<String> = l.locations.udp_recv.iter().map(|l| l.to_string()).collect();
    assert_eq!(at, ["main.conf:1:1", "/i.conf:1:1", "main.conf:3:1"]);
    assert_eq!(l.locations.metrics[0][1].to_string(), "/i.conf:4:2");
    let sel = l.config.select_metrics(&["a"]);
    let (g, s) = sel.unmatched[0];
    assert_eq!(l.locations.metrics[g][s].line, 4);
}

#[test]
fn tilde_in_include_paths_is_the_home_directory() {
    let world = MemSource::new()
        .with_env("HOME", "/home/g")
        .with_file("/home/g/extra.conf", "cluster { name = \"home\" }");
    let l = load(&world, "include (\"~/extra.conf\")").unwrap();
    assert_eq!(l.config.cluster.name, "home");
    let e = load(&world, "include (\"~other/extra.conf\")").unwrap_err();
    assert!(
        matches!(&e.errors[0], ConfigError::MissingInclude { .. }),
        "{e}"
    );
}
