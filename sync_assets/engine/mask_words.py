"""The word lists the name transforms pick from (masking.py), by keyed hash. Common names from many
languages, ASCII only, so that a masked name fits any encoding and any column as long as the longest."""

FIRST_NAMES = (
    "Ada", "Aiko", "Alba", "Amara", "Anders", "Anika", "Arjun", "Aya", "Bela", "Bruno", "Carmen", "Chen",
    "Clara", "Dario", "Dina", "Elif", "Emil", "Esme", "Farah", "Felix", "Greta", "Hana", "Hugo", "Ines",
    "Ivan", "Jonas", "Joon", "Kai", "Kamala", "Lars", "Leila", "Lena", "Luca", "Maya", "Mateo", "Mei",
    "Mila", "Nadia", "Nico", "Nora", "Omar", "Otto", "Paula", "Priya", "Rafael", "Rosa", "Sami", "Sara",
    "Sofia", "Tariq", "Tess", "Theo", "Uma", "Vera", "Viktor", "Wanda", "Xavier", "Yara", "Yusuf", "Zara",
    "Zoe", "Ravi", "Ilse", "Malik",
)  # fmt: skip

LAST_NAMES = (
    "Abara", "Adler", "Alves", "Andersen", "Bauer", "Becker", "Bianchi", "Castro", "Chen", "Costa",
    "Dahl", "Demir", "Diaz", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Hansen", "Hoffmann",
    "Ito", "Jansen", "Kaya", "Kim", "Kowalski", "Kumar", "Larsen", "Lee", "Lopez", "Marino", "Meyer",
    "Moreau", "Nakamura", "Navarro", "Nguyen", "Novak", "Okafor", "Olsen", "Park", "Patel", "Perez",
    "Petrov", "Quinn", "Rossi", "Santos", "Sato", "Schmidt", "Silva", "Singh", "Sousa", "Suzuki", "Tanaka",
    "Torres", "Usman", "Varga", "Vogel", "Wagner", "Walsh", "Weber", "Wong", "Yilmaz", "Young", "Zhang",
    "Ziegler",
)  # fmt: skip
