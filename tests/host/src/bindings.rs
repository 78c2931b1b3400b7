//! Host-side bindings for the Spin interfaces this host provides, generated from the
//! WIT inside the `spin-sdk` packages (linked by the build script: 5.x at
//! `wit-deps/spin`, 6.x at `wit-deps/spin6`). One interface per `bindgen!`, so that only
//! what we implement is generated. Spin 4's async interfaces (`async func` in WIT) come
//! out as `*WithStore` traits whose functions get an `Accessor`, registered with
//! `func_wrap_concurrent`, as in Spin's own `bindgen!`.

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

pub mod redis3 {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin6",
        interfaces: "import spin:redis/redis@3.0.0;",
        imports: { default: async | trappable },
        with: {
            "spin:redis/redis@3.0.0.connection": crate::spin_redis::RedisConnection,
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

pub mod variables3 {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin6",
        interfaces: "import spin:variables/variables@3.0.0;",
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

pub mod key_value3 {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin6",
        interfaces: "import spin:key-value/key-value@3.0.0;",
        imports: { default: async | trappable },
        with: {
            "spin:key-value/key-value@3.0.0.store": crate::spin_kv::KvStore,
        },
    });
}

/// `spin:postgres/postgres@4.2.0`, as Spin 4.0.2 links it: its blocking functions also
/// serve components built against 4.0.0 (the component model matches 4.0.0 imports to
/// a 4.2.0 instance), its `*-async` ones serve spin-sdk 6.
pub mod postgres {
    wasmtime::component::bindgen!({
        path: "wit-deps/spin6",
        interfaces: "import spin:postgres/postgres@4.2.0;",
        imports: { default: async | trappable },
        with: {
            "spin:postgres/postgres@4.2.0.connection": crate::spin_pg::PgConnection,
            "spin:postgres/postgres@4.2.0.connection-builder": crate::spin_pg::PgConnectionBuilder,
        },
    });
}
