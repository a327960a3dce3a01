//! The course's capacity and the student's limit hold under concurrent subscriptions,
//! though no aggregate holds both: each conditional append loses if a matching event
//! appeared after what its decision read, and is decided again.

use std::sync::Arc;

use course_enrolment::{
    DefineCourse, EnrolmentEvent, Refusal, STUDENT_COURSES_MAX, Subscribe, course_tag, student_tag,
};
use strata::{CommandError, Decider, EventStore, Query, QueryItem, decode_event};
use strata_engine::{Config, Store};

async fn subscriptions(store: &Store, tag: String) -> Vec<EnrolmentEvent> {
    let query = Query::new([QueryItem::new(["StudentSubscribed"], [tag])]);
    let slice = store.read_query(&query, None, 1_000).await.expect("read");
    slice
        .events
        .iter()
        .map(|event| decode_event(event, &Default::default()).expect("decode"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_course_never_takes_more_students_than_its_capacity() {
    let directory = tempfile::tempdir().expect("tempdir");
    let store = Store::open(directory.path(), Config::default()).expect("open");
    let decider = Arc::new(Decider::new(store.clone()).with_conflict_retries(64));
    decider
        .execute(&DefineCourse {
            course: "maths".into(),
            capacity: 5,
        })
        .await
        .expect("define");
    let again = decider
        .execute(&DefineCourse {
            course: "maths".into(),
            capacity: 9,
        })
        .await;
    assert!(matches!(
        again,
        Err(CommandError::Rejected(Refusal::CourseExists(_)))
    ));
    let mut tasks = Vec::new();
    for student in 0..20 {
        let decider = decider.clone();
        tasks.push(tokio::spawn(async move {
            decider
                .execute(&Subscribe {
                    student: format!("s{student}"),
                    course: "maths".into(),
                })
                .await
        }));
    }
    let (mut subscribed, mut full) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(outcome) => {
                assert!(outcome.appended.is_some());
                subscribed += 1;
            }
            Err(CommandError::Rejected(Refusal::CourseFull(_))) => full += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((subscribed, full), (5, 15));
    assert_eq!(subscriptions(&store, course_tag("maths")).await.len(), 5);
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_student_never_takes_more_than_the_limit() {
    let directory = tempfile::tempdir().expect("tempdir");
    let store = Store::open(directory.path(), Config::default()).expect("open");
    let decider = Arc::new(Decider::new(store.clone()).with_conflict_retries(64));
    let courses: Vec<String> = (0..8).map(|course| format!("c{course}")).collect();
    for course in &courses {
        decider
            .execute(&DefineCourse {
                course: course.clone(),
                capacity: 100,
            })
            .await
            .expect("define");
    }
    let mut tasks = Vec::new();
    for course in courses.clone() {
        let decider = decider.clone();
        tasks.push(tokio::spawn(async move {
            decider
                .execute(&Subscribe {
                    student: "ada".into(),
                    course,
                })
                .await
        }));
    }
    let (mut subscribed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => subscribed += 1,
            Err(CommandError::Rejected(Refusal::StudentAtLimit(_))) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(subscribed, STUDENT_COURSES_MAX);
    assert_eq!(refused, courses.len() - STUDENT_COURSES_MAX);
    assert_eq!(
        subscriptions(&store, student_tag("ada")).await.len(),
        STUDENT_COURSES_MAX
    );
    let twice = decider
        .execute(&Subscribe {
            student: "bob".into(),
            course: "nowhere".into(),
        })
        .await;
    assert!(matches!(
        twice,
        Err(CommandError::Rejected(Refusal::NoSuchCourse(_)))
    ));
    store.close();
}
