//! Macros shared by the crate's services.

/// Defines `get_ref`, `get_mut` and `into_inner` for a service whose inner
/// service `S` is its field `inner` (tower-http's `define_inner_service_accessors`).
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
