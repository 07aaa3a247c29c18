"""Diagnostic codes as named constants, and the catalogue of every code the compiler emits.

Write `codes.UNDEFINED_NAME` rather than the literal "E0100"; `CODES` maps each code to a
one-line description (docs/language.md lists them; the golden tests check that each code
is produced by at least one bad program in tests/bad/).  No other module under evo/ spells
a code as a string literal, and every constant here is in CODES or WARNINGS and in
docs/language.md's table (tests/test_one_home.py)."""

from __future__ import annotations


# syntax / lexical
UNEXPECTED_CHARACTER = "E0001"
UNEXPECTED_TOKEN = "E0002"
UNEXPECTED_END_OF_FILE = "E0003"
UNKNOWN_LANGUAGE_VERSION = "E0004"
KEYWORD_AS_NAME = "E0005"
INVALID_NUMBER_LITERAL = "E0006"
INVALID_QUOTED_NAME = "E0007"

# names and scopes
UNDEFINED_NAME = "E0100"
DUPLICATE_DEFINITION = "E0101"
NAME_BOUND_TWICE = "E0102"
UNKNOWN_LAYER_OR_BLOCK = "E0103"
WRONG_NUMBER_OF_ARGUMENTS = "E0104"
UNKNOWN_KEYWORD_ARGUMENT = "E0105"
ARGUMENT_GIVEN_TWICE = "E0106"
MISSING_ARGUMENT = "E0107"
RECURSIVE_BLOCK = "E0108"
UNREADABLE_FILE = "E0109"
IMPORT_CYCLE = "E0110"
MISSING_RETURN = "E0111"
STATEMENT_AFTER_RETURN = "E0112"
UNKNOWN_ATTRIBUTE_OF_A_TENSOR = "E0113"
TRAINING_ONLY_MISUSE = "E0120"

# evaluation
TYPE_MISMATCH = "E0200"
DIVISION_BY_ZERO = "E0201"
EXPANSION_TOO_LARGE = "E0202"
VALUE_OUT_OF_RANGE = "E0203"
CONDITION_IS_NOT_COMPILE_TIME = "E0204"
NOT_A_TENSOR = "E0205"
INDEX_OUT_OF_RANGE = "E0206"

# shapes
WRONG_TENSOR_RANK = "E0300"
SHAPE_MISMATCH = "E0301"
CHANNELS_NOT_DIVISIBLE_BY_GROUPS = "E0302"
OUTPUT_SIZE_IS_NOT_POSITIVE = "E0303"
INVALID_INPUT_DECLARATION = "E0304"
ELEMENT_COUNT_MISMATCH = "E0305"

# units and hardware
WRONG_UNIT = "E0400"
MISSING_UNIT = "E0401"
MISSING_HARDWARE_ATTRIBUTE = "E0402"
UNKNOWN_HARDWARE_ATTRIBUTE = "E0403"
VALUE_MUST_BE_POSITIVE = "E0404"
MEMORY_LEVELS_OUT_OF_ORDER = "E0405"
PE_MEMORY_LARGER_THAN_GLOBAL_MEMORY = "E0406"
UNKNOWN_MEMORY_LEVEL_KIND = "E0407"
DUPLICATE_MEMORY_LEVEL = "E0408"
UNKNOWN_BASE_HARDWARE = "E0409"
MISSING_MEMORY_LEVEL = "E0410"
UNKNOWN_UNIT = "E0411"
INVALID_HARDWARE_WORD = "E0412"

# cam / target / evolve
UNKNOWN_NETWORK = "E0500"
UNKNOWN_LAYER_PATH = "E0501"
CAM_LAYER_NOT_SPATIAL = "E0502"
UNKNOWN_HARDWARE = "E0503"
INVALID_CAM_SETTING = "E0504"
UNKNOWN_CAM = "E0505"
UNKNOWN_TARGET = "E0506"
UNKNOWN_GENE = "E0507"
UNKNOWN_METRIC = "E0508"
MISSING_SETTING = "E0509"
UNKNOWN_SETTING = "E0510"
INVALID_GENE_DOMAIN = "E0511"
INVALID_CONSTRAINT = "E0512"

# code -> one-line description
CODES: dict[str, str] = {
    UNEXPECTED_CHARACTER: "unexpected character",
    UNEXPECTED_TOKEN: "unexpected token",
    UNEXPECTED_END_OF_FILE: "unexpected end of file",
    UNKNOWN_LANGUAGE_VERSION: "unknown language version",
    KEYWORD_AS_NAME: "reserved keyword used as a name",
    INVALID_NUMBER_LITERAL: "invalid number literal",
    INVALID_QUOTED_NAME: "invalid quoted name",
    UNDEFINED_NAME: "undefined name",
    DUPLICATE_DEFINITION: "duplicate definition",
    NAME_BOUND_TWICE: "name bound twice",
    UNKNOWN_LAYER_OR_BLOCK: "unknown layer or block",
    WRONG_NUMBER_OF_ARGUMENTS: "wrong number of arguments",
    UNKNOWN_KEYWORD_ARGUMENT: "unknown keyword argument",
    ARGUMENT_GIVEN_TWICE: "argument given twice",
    MISSING_ARGUMENT: "missing argument",
    RECURSIVE_BLOCK: "recursive block",
    UNREADABLE_FILE: "file not found or not readable",
    IMPORT_CYCLE: "import cycle",
    MISSING_RETURN: "missing return",
    STATEMENT_AFTER_RETURN: "statement after return",
    UNKNOWN_ATTRIBUTE_OF_A_TENSOR: "unknown attribute of a tensor",
    TRAINING_ONLY_MISUSE: "training-only submodule misused",
    TYPE_MISMATCH: "type mismatch",
    DIVISION_BY_ZERO: "division by zero",
    EXPANSION_TOO_LARGE: "expansion too large",
    VALUE_OUT_OF_RANGE: "value out of range",
    CONDITION_IS_NOT_COMPILE_TIME: "condition is not compile-time",
    NOT_A_TENSOR: "not a tensor",
    INDEX_OUT_OF_RANGE: "index out of range",
    WRONG_TENSOR_RANK: "wrong tensor rank",
    SHAPE_MISMATCH: "shape mismatch",
    CHANNELS_NOT_DIVISIBLE_BY_GROUPS: "channels not divisible by groups",
    OUTPUT_SIZE_IS_NOT_POSITIVE: "output size is not positive",
    INVALID_INPUT_DECLARATION: "invalid input declaration",
    ELEMENT_COUNT_MISMATCH: "element count mismatch (reshape, split)",
    WRONG_UNIT: "wrong unit",
    MISSING_UNIT: "missing unit",
    MISSING_HARDWARE_ATTRIBUTE: "missing hardware attribute",
    UNKNOWN_HARDWARE_ATTRIBUTE: "unknown hardware attribute",
    VALUE_MUST_BE_POSITIVE: "value must be positive",
    MEMORY_LEVELS_OUT_OF_ORDER: "memory levels out of order",
    PE_MEMORY_LARGER_THAN_GLOBAL_MEMORY: "PE memory larger than global memory",
    UNKNOWN_MEMORY_LEVEL_KIND: "unknown memory level kind",
    DUPLICATE_MEMORY_LEVEL: "duplicate memory level",
    UNKNOWN_BASE_HARDWARE: "unknown base hardware",
    MISSING_MEMORY_LEVEL: "missing memory level",
    UNKNOWN_UNIT: "unknown unit",
    INVALID_HARDWARE_WORD: "invalid hardware word",
    UNKNOWN_NETWORK: "unknown network",
    UNKNOWN_LAYER_PATH: "unknown layer path",
    CAM_LAYER_NOT_SPATIAL: "CAM layer is not a spatial map",
    UNKNOWN_HARDWARE: "unknown hardware",
    INVALID_CAM_SETTING: "invalid CAM setting",
    UNKNOWN_CAM: "unknown cam",
    UNKNOWN_TARGET: "unknown target",
    UNKNOWN_GENE: "unknown gene",
    UNKNOWN_METRIC: "unknown metric",
    MISSING_SETTING: "missing setting",
    UNKNOWN_SETTING: "unknown setting",
    INVALID_GENE_DOMAIN: "invalid gene domain",
    INVALID_CONSTRAINT: "invalid constraint",
}

# warnings (not errors: the program compiles; kept out of CODES, the error catalogue)
EXPLAINER_TOO_EXPENSIVE = "W0520"

WARNINGS: dict[str, str] = {
    EXPLAINER_TOO_EXPENSIVE: "an explainer does more than 10x the work of inference",
}
