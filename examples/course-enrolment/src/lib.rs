//! Course enrolment with dynamic consistency boundaries (docs/DCB.md): a course has a
//! capacity, a student may take at most [`STUDENT_COURSES_MAX`] courses. A subscription
//! depends on the course's events and on the student's, so with aggregates it would need
//! one shared aggregate or a saga; here each decision reads the events its query selects
//! (by type and by the tags `course:<id>` and `student:<id>`) and appends on condition that
//! none of them changed meanwhile.

use serde::{Deserialize, Serialize};
use strata::{Decision, DomainEvent, Query, QueryItem, StreamName, Tagged};

/// Courses one student may take.
pub const STUDENT_COURSES_MAX: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EnrolmentEvent {
    CourseDefined { course: String, capacity: usize },
    StudentSubscribed { student: String, course: String },
}

impl DomainEvent for EnrolmentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            EnrolmentEvent::CourseDefined { .. } => "CourseDefined",
            EnrolmentEvent::StudentSubscribed { .. } => "StudentSubscribed",
        }
    }
}

pub fn course_tag(course: &str) -> String {
    format!("course:{course}")
}

pub fn student_tag(student: &str) -> String {
    format!("student:{student}")
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("course {0} already exists")]
    CourseExists(String),
    #[error("course {0} does not exist")]
    NoSuchCourse(String),
    #[error("course {0} is full")]
    CourseFull(String),
    #[error("student {0} already takes {STUDENT_COURSES_MAX} courses")]
    StudentAtLimit(String),
    #[error("student {0} already takes course {1}")]
    AlreadySubscribed(String, String),
    #[error("invalid name: {0}")]
    InvalidName(String),
}

fn stream(name: String) -> Result<StreamName, Refusal> {
    StreamName::new(name).map_err(|error| Refusal::InvalidName(error.to_string()))
}

/// Defines a course, once.
pub struct DefineCourse {
    pub course: String,
    pub capacity: usize,
}

impl Decision for DefineCourse {
    type Event = EnrolmentEvent;
    type State = bool;
    type Error = Refusal;

    fn query(&self) -> Query {
        Query::new([QueryItem::new(
            ["CourseDefined"],
            [course_tag(&self.course)],
        )])
    }

    fn evolve(&self, exists: &mut bool, _event: EnrolmentEvent) {
        *exists = true;
    }

    fn decide(&self, exists: &bool) -> Result<Vec<Tagged<EnrolmentEvent>>, Refusal> {
        if *exists {
            return Err(Refusal::CourseExists(self.course.clone()));
        }
        Ok(vec![Tagged::new(
            stream(format!("course-{}", self.course))?,
            EnrolmentEvent::CourseDefined {
                course: self.course.clone(),
                capacity: self.capacity,
            },
            [course_tag(&self.course)],
        )])
    }
}

/// Subscribes a student to a course: the course exists and is not full, the student takes
/// fewer than [`STUDENT_COURSES_MAX`] courses and not this one.
pub struct Subscribe {
    pub student: String,
    pub course: String,
}

#[derive(Default)]
pub struct SubscribeState {
    capacity: Option<usize>,
    course_students: usize,
    student_courses: Vec<String>,
}

impl Decision for Subscribe {
    type Event = EnrolmentEvent;
    type State = SubscribeState;
    type Error = Refusal;

    fn query(&self) -> Query {
        Query::new([
            QueryItem::new(
                ["CourseDefined", "StudentSubscribed"],
                [course_tag(&self.course)],
            ),
            QueryItem::new(["StudentSubscribed"], [student_tag(&self.student)]),
        ])
    }

    fn evolve(&self, state: &mut SubscribeState, event: EnrolmentEvent) {
        match event {
            EnrolmentEvent::CourseDefined { course, capacity } if course == self.course => {
                state.capacity = Some(capacity);
            }
            EnrolmentEvent::CourseDefined { .. } => {}
            EnrolmentEvent::StudentSubscribed { student, course } => {
                if course == self.course {
                    state.course_students += 1;
                }
                if student == self.student {
                    state.student_courses.push(course);
                }
            }
        }
    }

    fn decide(&self, state: &SubscribeState) -> Result<Vec<Tagged<EnrolmentEvent>>, Refusal> {
        let Some(capacity) = state.capacity else {
            return Err(Refusal::NoSuchCourse(self.course.clone()));
        };
        if state.student_courses.contains(&self.course) {
            return Err(Refusal::AlreadySubscribed(
                self.student.clone(),
                self.course.clone(),
            ));
        }
        if state.course_students >= capacity {
            return Err(Refusal::CourseFull(self.course.clone()));
        }
        if state.student_courses.len() >= STUDENT_COURSES_MAX {
            return Err(Refusal::StudentAtLimit(self.student.clone()));
        }
        Ok(vec![Tagged::new(
            stream(format!("student-{}", self.student))?,
            EnrolmentEvent::StudentSubscribed {
                student: self.student.clone(),
                course: self.course.clone(),
            },
            [course_tag(&self.course), student_tag(&self.student)],
        )])
    }
}
