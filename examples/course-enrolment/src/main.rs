//! Defines two courses and subscribes students on an embedded store in a temporary
//! directory, printing what each decision does.

use std::sync::Arc;

use course_enrolment::{DefineCourse, Subscribe};
use strata::Decider;
use strata_engine::{Config, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let store: Arc<Store> = Store::open(directory.path(), Config::default())?;
    let decider = Decider::new(store.clone());
    for (course, capacity) in [("maths", 2), ("music", 10)] {
        decider
            .execute(&DefineCourse {
                course: course.into(),
                capacity,
            })
            .await?;
        println!("course {course} defined, capacity {capacity}");
    }
    for (student, course) in [
        ("ada", "maths"),
        ("alan", "maths"),
        ("grace", "maths"),
        ("ada", "music"),
        ("ada", "maths"),
    ] {
        let outcome = decider
            .execute(&Subscribe {
                student: student.into(),
                course: course.into(),
            })
            .await;
        match outcome {
            Ok(_) => println!("{student} subscribed to {course}"),
            Err(error) => println!("{student} not subscribed to {course}: {error}"),
        }
    }
    store.close();
    Ok(())
}
