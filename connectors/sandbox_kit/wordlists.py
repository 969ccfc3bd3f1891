"""Built-in word lists for generated data (no external data sets)."""

from __future__ import annotations

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Christopher", "Lisa", "Daniel", "Nancy", "Matthew", "Betty",
    "Anthony", "Sandra", "Mark", "Ashley", "Donald", "Kimberly", "Steven", "Emily", "Andrew",
    "Donna", "Paul", "Michelle", "Joshua", "Carol", "Kenneth", "Amanda", "Kevin", "Melissa",
    "Brian", "Deborah", "George", "Stephanie", "Timothy", "Rebecca", "Ronald", "Sharon",
    "Jason", "Laura", "Edward", "Cynthia", "Jeffrey", "Amy", "Ryan", "Kathleen", "Jacob",
    "Angela", "Gary", "Shirley", "Nicholas", "Brenda", "Eric", "Emma", "Jonathan", "Anna",
    "Stephen", "Pamela", "Larry", "Nicole", "Justin", "Samantha", "Scott", "Katherine",
    "Brandon", "Christine", "Benjamin", "Helen", "Samuel", "Debra", "Gregory", "Rachel",
    "Alexander", "Carolyn", "Patrick", "Janet", "Frank", "Maria", "Raymond", "Olivia",
    "Jack", "Heather", "Dennis", "Catherine", "Priya", "Wei", "Hiroshi", "Yuki", "Carlos",
    "Sofia", "Lukas", "Hannah", "Mateo", "Camila", "Arjun", "Ananya", "Omar", "Fatima",
    "Liam", "Chloe", "Noah", "Mia", "Ethan", "Zoe", "Lucas", "Isabel", "Oliver", "Grace",
)

LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans",
    "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris",
    "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson",
    "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
    "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster",
    "Jimenez", "Schmidt", "Muller", "Fischer", "Weber", "Dubois", "Laurent", "Tanaka",
    "Suzuki", "Sato", "Chen", "Wang", "Singh", "Kumar", "Silva", "Santos", "Oliveira",
    "Jansen", "De Vries", "O'Brien", "MacLeod", "Novak", "Kowalski", "Haddad", "Okafor",
)

COMPANY_WORDS = (
    "Blue", "North", "Summit", "Apex", "Granite", "Silver", "Cedar", "Harbor", "Pioneer",
    "Evergreen", "Atlas", "Beacon", "Crescent", "Falcon", "Horizon", "Iron", "Keystone",
    "Liberty", "Meridian", "Oak", "Pacific", "Quantum", "Redwood", "Sierra", "Sterling",
    "Titan", "Union", "Vertex", "Vista", "Willow", "Zenith", "Alpine", "Bright", "Coastal",
    "Delta", "Eagle", "Golden", "Highland", "Insight", "Lakeside", "Maple", "Nova", "Orion",
    "Pinnacle", "Prairie", "Riverside", "Sapphire", "Sunrise", "Trinity", "Valley",
    "Westfield", "Arrow", "Bayview", "Cobalt", "Copper", "Crown", "Everest", "Frontier",
    "Glacier", "Harvest", "Juniper", "Kestrel", "Lighthouse", "Magnolia", "Northstar",
    "Paragon", "Polaris", "Skyline", "Spruce", "Tidewater", "Vanguard", "Cardinal", "Aspen",
    "Bluebird", "Canyon", "Driftwood", "Ember", "Foxglove", "Greystone", "Hawthorne",
)
COMPANY_SECOND_WORDS = (
    "", "", "", "Ridge", "Point", "Bridge", "Field", "Gate", "Wave", "Peak", "Stone", "Brook",
    "Line", "Path", "Rock", "Crest", "Creek", "View", "Works",
)
INDUSTRY_NOUNS: dict[str, tuple[str, ...]] = {
    "Technology": ("Systems", "Software", "Technologies", "Labs", "Networks", "Data", "Digital",
                   "Cloud"),
    "Finance": ("Capital", "Financial", "Partners", "Investments", "Advisors"),
    "Banking": ("Bank", "Bancorp", "Savings", "Trust"),
    "Insurance": ("Insurance", "Assurance", "Mutual", "Underwriters"),
    "Healthcare": ("Health", "Medical", "Care", "Clinics", "Health Partners"),
    "Biotechnology": ("Therapeutics", "Biosciences", "Genomics", "Bio"),
    "Manufacturing": ("Industries", "Manufacturing", "Components", "Materials", "Fabrication"),
    "Retail": ("Goods", "Outfitters", "Market", "Brands", "Stores"),
    "Education": ("Learning", "Academy", "Education", "Institute"),
    "Energy": ("Energy", "Power", "Renewables", "Resources"),
    "Media": ("Media", "Studios", "Publishing", "Broadcasting"),
    "Telecommunications": ("Telecom", "Communications", "Wireless", "Fiber"),
    "Transportation": ("Logistics", "Freight", "Transport", "Lines"),
    "Consulting": ("Consulting", "Advisory", "Group", "Associates"),
    "Hospitality": ("Hotels", "Hospitality", "Resorts", "Inns"),
    "Government": ("Authority", "Agency", "Services", "Commission"),
}
DEFAULT_NOUNS = ("Group", "Company", "Enterprises", "Holdings")

# Country → (weight, legal suffixes, top-level domain, phone prefix, regions)
# where regions are (state or None, cities).
COUNTRIES: dict[str, tuple[float, tuple[str, ...], str, str,
                           tuple[tuple[str | None, tuple[str, ...]], ...]]] = {
    "United States": (0.58, ("Inc.", "LLC", "Corp.", ""), ".com", "+1", (
        ("CA", ("San Francisco", "Los Angeles", "San Diego", "San Jose", "Sacramento")),
        ("NY", ("New York", "Buffalo", "Rochester")),
        ("TX", ("Austin", "Dallas", "Houston", "San Antonio")),
        ("IL", ("Chicago", "Naperville")),
        ("MA", ("Boston", "Cambridge", "Worcester")),
        ("WA", ("Seattle", "Bellevue", "Spokane")),
        ("GA", ("Atlanta", "Savannah")),
        ("CO", ("Denver", "Boulder")),
        ("FL", ("Miami", "Orlando", "Tampa")),
        ("NC", ("Charlotte", "Raleigh")),
        ("PA", ("Philadelphia", "Pittsburgh")),
        ("OH", ("Columbus", "Cleveland", "Cincinnati")),
        ("MN", ("Minneapolis", "Saint Paul")),
        ("OR", ("Portland", "Eugene")),
        ("AZ", ("Phoenix", "Scottsdale")),
    )),
    "Canada": (0.06, ("Inc.", "Ltd.", ""), ".ca", "+1", (
        ("ON", ("Toronto", "Ottawa")), ("BC", ("Vancouver", "Victoria")),
        ("QC", ("Montreal", "Quebec City")), ("AB", ("Calgary", "Edmonton")),
    )),
    "United Kingdom": (0.09, ("Ltd.", "plc", ""), ".co.uk", "+44", (
        ("England", ("London", "Manchester", "Birmingham", "Leeds", "Bristol")),
        ("Scotland", ("Edinburgh", "Glasgow")),
    )),
    "Germany": (0.06, ("GmbH", "AG", ""), ".de", "+49", (
        ("Bavaria", ("Munich", "Nuremberg")), ("Berlin", ("Berlin",)),
        ("Hesse", ("Frankfurt", "Wiesbaden")), ("Hamburg", ("Hamburg",)),
    )),
    "France": (0.04, ("SA", "SAS", ""), ".fr", "+33", (
        (None, ("Paris", "Lyon", "Marseille", "Toulouse")),
    )),
    "Netherlands": (0.03, ("B.V.", "N.V.", ""), ".nl", "+31", (
        (None, ("Amsterdam", "Rotterdam", "Utrecht", "Eindhoven")),
    )),
    "Australia": (0.05, ("Pty Ltd", "Ltd", ""), ".com.au", "+61", (
        ("NSW", ("Sydney", "Newcastle")), ("VIC", ("Melbourne",)), ("QLD", ("Brisbane",)),
    )),
    "Japan": (0.03, ("K.K.", ""), ".co.jp", "+81", (
        ("Tokyo", ("Tokyo",)), ("Osaka", ("Osaka",)),
    )),
    "Singapore": (0.03, ("Pte. Ltd.", ""), ".sg", "+65", ((None, ("Singapore",)),)),
    "Brazil": (0.03, ("Ltda.", "S.A.", ""), ".com.br", "+55", (
        ("SP", ("São Paulo", "Campinas")), ("RJ", ("Rio de Janeiro",)),
    )),
}

STREET_NAMES = (
    "Main", "Market", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill",
    "Park", "River", "Church", "High", "Mill", "Spring", "Bridge", "Station", "King", "Queen",
    "Harbor", "Commerce", "Industrial", "Technology", "Innovation", "Enterprise", "Madison",
)
STREET_TYPES = ("Street", "Avenue", "Boulevard", "Road", "Drive", "Parkway", "Way", "Lane")

CONTACT_TITLES = (
    ("Chief Executive Officer", "Executive"), ("Chief Financial Officer", "Finance"),
    ("Chief Technology Officer", "Engineering"), ("Chief Operating Officer", "Operations"),
    ("Chief Data Officer", "Data"), ("VP of Sales", "Sales"), ("VP of Engineering", "Engineering"),
    ("VP of Finance", "Finance"), ("VP of Operations", "Operations"),
    ("Director of IT", "IT"), ("Director of Operations", "Operations"),
    ("Director of Analytics", "Data"), ("Head of Procurement", "Procurement"),
    ("IT Manager", "IT"), ("Procurement Manager", "Procurement"),
    ("Operations Manager", "Operations"), ("Finance Manager", "Finance"),
    ("Data Engineer", "Data"), ("Business Analyst", "Operations"), ("Controller", "Finance"),
    ("Senior Buyer", "Procurement"), ("Solutions Architect", "IT"),
)

NEXT_STEPS = (
    "Schedule product demo", "Send proposal", "Security review", "Legal review of MSA",
    "Confirm budget", "Executive sponsor meeting", "Pricing approval", "Technical deep dive",
    "Reference call", "Finalize order form",
)

# Family → (code, list price range, quantity ranges per size band, items)
PRODUCT_CATALOG: dict[str, tuple[str, tuple[float, float], dict[str, tuple[int, int]],
                                 tuple[str, ...]]] = {
    "Platform": ("PLT", (300, 1200), {"SMB": (3, 25), "MM": (15, 120), "ENT": (60, 600)},
                 ("Core", "Workflow", "Automation", "Governance", "Sandbox Environments")),
    "Analytics": ("ANL", (200, 900), {"SMB": (2, 15), "MM": (8, 60), "ENT": (30, 300)},
                  ("Dashboards", "Forecasting", "Warehouse Sync", "Embedded Analytics",
                   "Predictive Insights")),
    "Integrations": ("INT", (2500, 15000), {"SMB": (1, 2), "MM": (1, 4), "ENT": (2, 8)},
                     ("ERP Connector", "Data Lake Connector", "Billing Connector",
                      "Marketing Connector", "API Gateway")),
    "Professional Services": ("PS", (1200, 2200), {"SMB": (2, 8), "MM": (5, 25),
                                                   "ENT": (15, 90)},
                              ("Implementation", "Data Migration", "Solution Architecture",
                               "Custom Development", "Health Check")),
    "Support": ("SUP", (3000, 40000), {"SMB": (1, 1), "MM": (1, 1), "ENT": (1, 2)},
                ("Standard Support", "Premier Support", "Premier Plus Support",
                 "Technical Account Manager", "Round-the-Clock Coverage")),
    "Training": ("TRN", (300, 1800), {"SMB": (1, 5), "MM": (2, 12), "ENT": (5, 40)},
                 ("Administrator Course", "Developer Bootcamp", "End User Training",
                  "Analytics Workshop", "Executive Briefing")),
}
EDITIONS = (("Standard", 1.0), ("Professional", 1.5), ("Enterprise", 2.0))
