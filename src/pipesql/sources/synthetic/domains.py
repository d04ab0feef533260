"""The eight domains of the synthetic benchmark, in the order databases are made.

Each has 3-5 tables linked by foreign keys; `company.employee.manager_id`,
`hospital.doctor.supervisor_id` and `college.course.prerequisite_id` refer to their own table for
self-joins. Word pools hold apostrophes (O'Brien, St. Mary's) and note columns hold double quotes,
so gold SQL has to escape them.
"""

from __future__ import annotations

from typing import Any

from pipesql.sources.synthetic.schema import Column, Domain, Link, Table

FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal",
    "Karin", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Aisha", "Bruno", "Carmen", "Dmitri",
)
LAST_NAMES = (
    "Smith", "O'Brien", "Garcia", "Nguyen", "Müller", "Kowalski", "D'Souza", "Okafor", "Rossi",
    "Tanaka", "O'Neill", "Johansson", "Dubois", "Silva", "Haddad", "Novak", "Kim", "Patel",
    "Fischer", "Moreau", "Larsen", "Costa", "Ivanova", "McAllister", "Brennan", "Abara",
)
COUNTRIES = (
    "France", "United States", "Japan", "Brazil", "Germany", "Nigeria", "Canada", "India",
    "Italy", "South Korea", "Mexico", "Sweden",
)
CITIES = (
    "Boston", "Lyon", "Osaka", "Porto", "Austin", "Leeds", "Hamburg", "Accra", "Denver",
    "Seville", "Busan", "Calgary",
)
PLACES = ("Riverside", "Oakwood", "Harbor", "Summit", "Maple", "Lakeview", "Kingston", "Elm")
SUBJECTS = (
    "Mathematics", "Physics", "History", "Computer Science", "Biology", "Economics",
    "Philosophy", "Chemistry",
)
TITLE_HEADS = (
    "Midnight", "Golden", "Silent", "Electric", "Winter's", "Broken", "Endless", "Paper",
    "Scarlet", "Hidden", "Northern", "Last",
)
TITLE_TAILS = (
    "Echoes", "Horizon", "Garden", "Promise", "Tale", "River", "Kingdom", "Letters", "Signal",
    "Harvest", "Voyage", "Mirror",
)
QUOTES = (
    'Known as "the voice of the valley".',
    "Doesn't give interviews.",
    'Critics called it "a quiet triumph".',
    "Grew up in her aunt's bakery.",
    'Signed with the slogan "always louder".',
    "Won't travel on Sundays.",
    "A fan favourite since the '90s.",
    'Once described as "impossible to forget".',
)


def pk(table: str) -> Column:
    return Column(f"{table}_id", "pk")


def label(name: str, phrase: str, *parts: tuple[str, ...], quoted: bool = False) -> Column:
    return Column(name, "label", phrase, pool=parts, quoted=quoted)


def person_name() -> Column:
    return label("name", "name", FIRST_NAMES, LAST_NAMES)


def category(name: str, phrase: str, values: tuple[str, ...], **kw: Any) -> Column:
    return Column(name, "category", phrase, pool=(values,), **kw)


def number(name: str, phrase: str, low: float, high: float, step: float = 1, **kw: Any) -> Column:
    return Column(name, "number", phrase, low=low, high=high, step=step, **kw)


def date(name: str, phrase: str, start: str, end: str, **kw: Any) -> Column:
    return Column(name, "date", phrase, dates=(start, end), **kw)


def note(name: str, phrase: str, nullable: float = 0.3) -> Column:
    return Column(name, "note", phrase, pool=(QUOTES,), nullable=nullable)


def fk(name: str, ref: str, role: str, **kw: Any) -> Column:
    return Column(name, "fk", role, ref=ref, role=role, **kw)


CONCERT = Domain("concert_singer", (
    Table("stadium", "stadium", (
        pk("stadium"),
        label("name", "name", PLACES, ("Arena", "Stadium", "Park", "Dome"), quoted=True),
        category("city", "city", CITIES, eq="are in {v}"),
        number("capacity", "capacity", 2000, 90000, 500, additive=True, most="largest",
               least="smallest", levels=("Large", "Small")),
        number("opening_year", "opening year", 1950, 2020, gt="opened after {v}",
               lt="opened before {v}"),
    )),
    Table("singer", "singer", (
        pk("singer"),
        person_name(),
        category("country", "country", COUNTRIES, eq="are from {v}"),
        number("age", "age", 18, 72, gt="are older than {v}", lt="are younger than {v}",
               most="oldest", least="youngest", levels=("Senior", "Junior")),
        number("net_worth", "net worth", 0.5, 150, 0.1, nullable=0.2, additive=True),
        category("genre", "genre", ("Pop", "Rock", "Jazz", "Soul", "Folk", "Hip Hop", "R&B"),
                 eq="perform {v} music"),
        note("bio", "biography"),
    ), person=True),
    Table("concert", "concert", (
        pk("concert"),
        label("title", "title", TITLE_HEADS, TITLE_TAILS, quoted=True),
        fk("stadium_id", "stadium", "stadium", eq="are held at {v}"),
        date("concert_date", "date", "2012-01-01", "2023-12-31", gt="took place after {v}",
             lt="took place before {v}", year="took place in {v}"),
        number("ticket_price", "ticket price", 15, 250, 0.5, gt="cost more than {v}",
               lt="cost less than {v}", levels=("Expensive", "Affordable")),
    )),
    Table("singer_in_concert", "performance", (
        fk("singer_id", "singer", "singer"),
        fk("concert_id", "concert", "concert"),
    ), link=Link("singer_id", "concert_id", "performed in")),
))

COMPANY = Domain("company", (
    Table("department", "department", (
        pk("department"),
        label("name", "name", ("North", "South", "Central", "Global", "Digital"),
              ("Sales", "Research", "Finance", "Marketing", "Logistics", "Support")),
        category("city", "city", CITIES, eq="are based in {v}"),
        number("budget", "budget", 100000, 5000000, 50000, additive=True, most="largest",
               least="smallest"),
    )),
    Table("employee", "employee", (
        pk("employee"),
        person_name(),
        fk("department_id", "department", "department", eq="work in the {v} department"),
        fk("manager_id", "employee", "manager", nullable=0.1, eq="report to {v}",
           is_null="have no manager", not_null="have a manager"),
        category("job_title", "job title", ("Engineer", "Analyst", "Designer", "Manager",
                                            "Accountant", "Technician", "Sales Representative")),
        number("salary", "salary", 30000, 180000, 1000, additive=True, gt="earn more than {v}",
               lt="earn less than {v}", most="highest-paid", least="lowest-paid"),
        date("hire_date", "hire date", "2005-01-01", "2023-12-31", gt="were hired after {v}",
             lt="were hired before {v}", year="were hired in {v}"),
    ), person=True),
    Table("project", "project", (
        pk("project"),
        label("name", "name", ("Apollo", "Falcon", "Orion", "Juniper", "Atlas", "Beacon"),
              ("Migration", "Portal", "Upgrade", "Audit", "Launch"), quoted=True),
        number("budget", "budget", 20000, 900000, 10000, additive=True),
        date("start_date", "start date", "2015-01-01", "2023-12-31", gt="started after {v}",
             lt="started before {v}", year="started in {v}"),
        category("status", "status", ("Active", "Completed", "On Hold", "Cancelled"),
                 eq="have the status {v}"),
    )),
    Table("works_on", "assignment", (
        fk("employee_id", "employee", "employee"),
        fk("project_id", "project", "project"),
        number("hours", "number of weekly hours", 5, 40, additive=True),
    ), link=Link("employee_id", "project_id", "worked on")),
))

FLIGHT = Domain("flight_company", (
    Table("airline", "airline", (
        pk("airline"),
        label("name", "name", ("Sky", "Pacific", "Atlas", "Aurora", "Coastal", "Meridian"),
              ("Air", "Airways", "Airlines", "Jet"), quoted=True),
        category("country", "country", COUNTRIES, eq="are based in {v}"),
        number("founded_year", "founding year", 1920, 2015, gt="were founded after {v}",
               lt="were founded before {v}"),
    )),
    Table("airport", "airport", (
        pk("airport"),
        label("name", "name", PLACES + CITIES, ("International", "Regional", "Airfield"),
              quoted=True),
        category("city", "city", CITIES, eq="are in {v}"),
        category("country", "country", COUNTRIES, eq="are in {v}"),
        number("elevation", "elevation", 0, 2500, 5),
    )),
    Table("pilot", "pilot", (
        pk("pilot"),
        person_name(),
        fk("airline_id", "airline", "airline", eq="fly for {v}"),
        number("age", "age", 25, 65, gt="are older than {v}", lt="are younger than {v}",
               most="oldest", least="youngest", levels=("Senior", "Junior")),
        category("rank", "rank", ("Captain", "First Officer", "Second Officer")),
    ), person=True),
    Table("flight", "flight", (
        pk("flight"),
        label("flight_number", "flight number", ("AX", "BQ", "CZ", "DV", "EK"),
              tuple(str(n) for n in range(100, 1000, 7))),
        fk("airline_id", "airline", "airline", eq="are operated by {v}"),
        fk("origin_airport_id", "airport", "origin airport", eq="depart from {v}"),
        fk("destination_airport_id", "airport", "destination airport", eq="arrive at {v}"),
        date("departure_date", "departure date", "2022-01-01", "2023-12-31",
             gt="depart after {v}", lt="depart before {v}", year="depart in {v}"),
        number("distance", "distance", 150, 9000, 10, additive=True, most="longest",
               least="shortest", levels=("Long-haul", "Short-haul")),
        number("price", "ticket price", 49, 1500, 0.5, gt="cost more than {v}",
               lt="cost less than {v}", levels=("Expensive", "Cheap")),
    ), link=Link("airline_id", "origin_airport_id", "flew from")),
))

COLLEGE = Domain("college", (
    Table("instructor", "instructor", (
        pk("instructor"),
        person_name(),
        category("department", "department", SUBJECTS, eq="teach in the {v} department"),
        number("salary", "salary", 45000, 160000, 1000, additive=True, gt="earn more than {v}",
               lt="earn less than {v}", most="highest-paid", least="lowest-paid"),
    ), person=True),
    Table("course", "course", (
        pk("course"),
        label("title", "title", ("Introduction to", "Advanced", "Applied", "Topics in"),
              SUBJECTS, quoted=True),
        fk("instructor_id", "instructor", "instructor", eq="are taught by {v}"),
        fk("prerequisite_id", "course", "prerequisite", nullable=0.5,
           is_null="have no prerequisite", not_null="have a prerequisite"),
        number("credits", "credit value", 1, 6, additive=True),
    )),
    Table("student", "student", (
        pk("student"),
        person_name(),
        category("major", "major", SUBJECTS, eq="major in {v}"),
        number("enrollment_year", "enrollment year", 2015, 2023, gt="enrolled after {v}",
               lt="enrolled before {v}"),
        number("gpa", "GPA", 1.5, 4.0, 0.1, nullable=0.15, levels=("Honors", "Standard")),
        date("birth_date", "birth date", "1995-01-01", "2006-12-31", gt="were born after {v}",
             lt="were born before {v}", year="were born in {v}"),
    ), person=True),
    Table("enrollment", "enrollment", (
        fk("student_id", "student", "student"),
        fk("course_id", "course", "course"),
        category("grade", "grade", ("A", "B", "C", "D", "F"), nullable=0.1),
        category("semester", "semester", ("Fall 2022", "Spring 2023", "Fall 2023"),
                 eq="are in {v}"),
    ), link=Link("student_id", "course_id", "took")),
))

SHOP = Domain("online_shop", (
    Table("supplier", "supplier", (
        pk("supplier"),
        label("name", "name", LAST_NAMES, ("Trading", "Supplies", "& Sons", "Wholesale"),
              quoted=True),
        category("country", "country", COUNTRIES, eq="are based in {v}"),
        number("rating", "rating", 1, 5, 0.1, levels=("Preferred", "Regular")),
    )),
    Table("product", "product", (
        pk("product"),
        label("name", "name", ("Deluxe", "Compact", "Classic", "Smart", "Eco", "Pro"),
              ("Kettle", "Lamp", "Backpack", "Blender", "Chair", "Speaker", "Tent"),
              quoted=True),
        fk("supplier_id", "supplier", "supplier", eq="are supplied by {v}"),
        category("category", "category", ("Kitchen", "Garden", "Toys", "Books", "Electronics",
                                          "Sports"), eq="belong to the {v} category"),
        number("price", "price", 2.5, 900, 0.25, gt="cost more than {v}", lt="cost less than {v}",
               most="most expensive", least="cheapest", levels=("Expensive", "Cheap")),
        number("stock", "stock level", 0, 500, additive=True),
        note("description", "description"),
    )),
    Table("customer", "customer", (
        pk("customer"),
        person_name(),
        category("city", "city", CITIES, eq="live in {v}"),
        category("membership", "membership level", ("Gold", "Silver", "Bronze"), nullable=0.2,
                 eq="hold {v} membership", is_null="have no membership level"),
        date("join_date", "join date", "2016-01-01", "2023-12-31", gt="joined after {v}",
             lt="joined before {v}", year="joined in {v}"),
        number("loyalty_points", "loyalty points balance", 0, 5000, 10, additive=True),
    ), person=True),
    Table("purchase", "purchase", (
        pk("purchase"),
        fk("customer_id", "customer", "customer"),
        fk("product_id", "product", "product"),
        date("purchase_date", "purchase date", "2020-01-01", "2023-12-31",
             gt="were made after {v}", lt="were made before {v}", year="were made in {v}"),
        number("quantity", "quantity", 1, 10, additive=True),
    ), link=Link("customer_id", "product_id", "bought")),
))

MOVIE = Domain("movie_rating", (
    Table("director", "director", (
        pk("director"),
        person_name(),
        category("country", "country", COUNTRIES, eq="are from {v}"),
        number("birth_year", "birth year", 1940, 1990, gt="were born after {v}",
               lt="were born before {v}"),
    ), person=True),
    Table("movie", "movie", (
        pk("movie"),
        label("title", "title", ("The",) + TITLE_HEADS, TITLE_TAILS, quoted=True),
        fk("director_id", "director", "director", eq="were directed by {v}"),
        number("release_year", "release year", 1970, 2023, gt="were released after {v}",
               lt="were released before {v}", most="newest", least="oldest",
               levels=("Recent", "Classic")),
        category("genre", "genre", ("Drama", "Comedy", "Thriller", "Sci-Fi", "Documentary",
                                    "Animation", "Horror")),
        number("budget", "budget in millions", 0.5, 250, 0.5, nullable=0.2, additive=True),
        note("tagline", "tagline"),
    )),
    Table("reviewer", "reviewer", (
        pk("reviewer"),
        person_name(),
        category("city", "city", CITIES, eq="live in {v}"),
        number("member_since", "sign-up year", 2005, 2023, gt="signed up after {v}",
               lt="signed up before {v}"),
    ), person=True),
    Table("rating", "rating", (
        fk("reviewer_id", "reviewer", "reviewer"),
        fk("movie_id", "movie", "movie"),
        number("stars", "star count", 1, 5),
        date("rating_date", "rating date", "2015-01-01", "2023-12-31", gt="were given after {v}",
             lt="were given before {v}", year="were given in {v}"),
    ), link=Link("reviewer_id", "movie_id", "rated")),
))

HOSPITAL = Domain("hospital", (
    Table("ward", "ward", (
        pk("ward"),
        label("name", "name", ("North", "East", "West", "St. Mary's", "St. Luke's", "Central"),
              ("Wing", "Ward", "Unit"), quoted=True),
        number("floor", "floor number", 1, 8),
        number("capacity", "bed capacity", 4, 60, additive=True, levels=("Large", "Small")),
    )),
    Table("doctor", "doctor", (
        pk("doctor"),
        person_name(),
        category("specialty", "specialty", ("Cardiology", "Neurology", "Pediatrics",
                                            "Oncology", "Orthopedics", "Dermatology"),
                 eq="specialize in {v}"),
        fk("ward_id", "ward", "ward", eq="work in {v}"),
        fk("supervisor_id", "doctor", "supervisor", nullable=0.2, eq="are supervised by {v}",
           is_null="have no supervisor", not_null="have a supervisor"),
        number("consultation_fee", "consultation fee", 40, 400, 0.5, gt="charge more than {v}",
               lt="charge less than {v}"),
    ), person=True),
    Table("patient", "patient", (
        pk("patient"),
        person_name(),
        date("birth_date", "birth date", "1935-01-01", "2020-12-31", gt="were born after {v}",
             lt="were born before {v}", year="were born in {v}"),
        category("gender", "gender", ("Female", "Male")),
        category("city", "city", CITIES, eq="live in {v}"),
        category("insurance", "insurance provider", ("MediPlus", "HealthFirst", "CareWell"),
                 nullable=0.25, eq="are insured by {v}"),
        fk("ward_id", "ward", "ward", nullable=0.3, eq="are admitted to {v}",
           is_null="are not admitted to any ward", not_null="are admitted to a ward"),
    ), person=True),
    Table("appointment", "appointment", (
        pk("appointment"),
        fk("patient_id", "patient", "patient"),
        fk("doctor_id", "doctor", "doctor"),
        date("appointment_date", "date", "2021-01-01", "2023-12-31", gt="took place after {v}",
             lt="took place before {v}", year="took place in {v}"),
        number("fee", "fee", 20, 400, 0.5, additive=True),
        note("notes", "notes", nullable=0.5),
    ), link=Link("patient_id", "doctor_id", "saw")),
))

LIBRARY = Domain("library", (
    Table("author", "author", (
        pk("author"),
        person_name(),
        category("country", "country", COUNTRIES, eq="are from {v}"),
        number("birth_year", "birth year", 1900, 1995, gt="were born after {v}",
               lt="were born before {v}"),
    ), person=True),
    Table("book", "book", (
        pk("book"),
        label("title", "title", ("The",) + TITLE_HEADS, TITLE_TAILS, quoted=True),
        fk("author_id", "author", "author", eq="were written by {v}"),
        category("genre", "genre", ("Mystery", "Romance", "Fantasy", "Biography", "History",
                                    "Poetry", "Science Fiction")),
        number("publication_year", "publication year", 1950, 2023,
               gt="were published after {v}", lt="were published before {v}",
               most="most recent", least="oldest"),
        number("pages", "page count", 80, 900, most="longest", least="shortest",
               levels=("Long", "Short")),
        note("summary", "summary"),
    )),
    Table("member", "member", (
        pk("member"),
        person_name(),
        category("membership_type", "membership type", ("Standard", "Student", "Senior",
                                                        "Family")),
        date("join_date", "join date", "2010-01-01", "2023-12-31", gt="joined after {v}",
             lt="joined before {v}", year="joined in {v}"),
        category("city", "city", CITIES, eq="live in {v}"),
    ), person=True),
    Table("loan", "loan", (
        pk("loan"),
        fk("book_id", "book", "book"),
        fk("member_id", "member", "member"),
        date("loan_date", "loan date", "2020-01-01", "2023-12-31", gt="started after {v}",
             lt="started before {v}", year="started in {v}"),
        date("return_date", "return date", "2020-01-01", "2024-06-30", after="loan_date",
             nullable=0.3, is_null="have not been returned", not_null="have been returned"),
    ), link=Link("member_id", "book_id", "borrowed")),
))

DOMAINS: tuple[Domain, ...] = (CONCERT, COMPANY, FLIGHT, COLLEGE, SHOP, MOVIE, HOSPITAL, LIBRARY)
