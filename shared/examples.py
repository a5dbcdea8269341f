"""The three seed examples every model must get right: used by the gate, smoke tests and load checks."""

SEED_EXAMPLES: tuple[tuple[dict, str], ...] = (
    ({"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750,
      "sex": "male", "island": "Torgersen", "year": 2007}, "Adelie"),
    ({"bill_length_mm": 50.0, "bill_depth_mm": 15.2, "flipper_length_mm": 230, "body_mass_g": 6050,
      "sex": "male", "island": "Biscoe", "year": 2007}, "Gentoo"),
    ({"bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192, "body_mass_g": 3500,
      "sex": "female", "island": "Dream", "year": 2007}, "Chinstrap"),
)
