//! Host-side bindings for the Spin interfaces this host provides, generated from the
//! WIT inside the `spin-sdk` package (linked to `wit-deps/spin` by the build script)
//! and from the cron world in the repository's `wit/` folder. One interface per
//! `bindgen!`, so that only what we implement is generated.

pub mod redis {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin",
        interfaces: "import fermyon:spin/redis@2.0.0;",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis@2.0.0.connection": crate::spin_redis::RedisConnection,
        },
    });
}

pub mod variables {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin",
        interfaces: "import fermyon:spin/variables@2.0.0;",
        imports: { default: async | trappable },
    });
}

pub mod key_value {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin",
        interfaces: "import fermyon:spin/key-value@2.0.0;",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value@2.0.0.store": crate::spin_kv::KvStore,
        },
    });
}

pub mod postgres {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin",
        interfaces: "import spin:postgres/postgres@4.0.0;",
        imports: { default: async | trappable },
        with: {
            "spin:postgres/postgres@4.0.0.connection": crate::spin_pg::PgConnection,
        },
    });
}
