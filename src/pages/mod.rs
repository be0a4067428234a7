//! One module a page.

mod home;
mod landing;
mod not_found;

pub use home::HomePage;
pub use landing::LandingPage;
pub use not_found::NotFoundPage;
