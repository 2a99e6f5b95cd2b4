//! The Snapgres web console: sign in with a token, see instances and images, take an image,
//! restore one as a new instance, and watch every task's steps live.

pub mod api;
pub mod components;
pub mod pages;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::path;

/// The application: navigation and routes.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <header>
                <span class="brand">"Snapgres"</span>
                <nav aria-label="Main">
                    <A href="/">"Instances"</A>
                    <A href="/images">"Images"</A>
                    <A href="/tasks">"Tasks"</A>
                    <A href="/signin">"Token"</A>
                </nav>
            </header>
            <main>
                <Routes fallback=|| view! { <p>"Page not found."</p> }>
                    <Route path=path!("/") view=pages::instances::Instances />
                    <Route path=path!("/signin") view=pages::signin::SignIn />
                    <Route path=path!("/instances/new") view=pages::new_instance::NewInstance />
                    <Route path=path!("/images") view=pages::images::Images />
                    <Route path=path!("/images/:id/restore") view=pages::restore::Restore />
                    <Route path=path!("/tasks") view=pages::tasks::Tasks />
                    <Route path=path!("/tasks/:id") view=pages::task::TaskPage />
                </Routes>
            </main>
        </Router>
    }
}
