"""The text the trained demo (fixtures/trained) learns from: pre-training documents and the three adapters' tasks.

No torch here, so that the data can be checked on any machine. Every generator takes a random.Random, so a
seed fixes the data. Words are split in two classes by a hash (is_held_out): training only ever draws
training-class words and numbers, the held-out evaluation only held-out-class ones, so every held-out prompt
holds a word or number the training never saw.
"""

import random
import zlib

BOS = "<|begin|>"
EOS = "<|end|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SPECIAL_TOKENS = [BOS, EOS, USER, ASSISTANT]

# One user turn renders exactly as render_chat below (the training script checks that transformers agrees).
# The model was trained without system messages; as Gemma's template does, a leading one is written at the
# start of the first user turn, so that clients which always send one still get an answer.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if not loop.first %}{{ raise_exception('a system message must come first') }}{% endif %}"
    "{% elif message['role'] == 'user' %}<|user|>"
    "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<|end|>"
    "{% else %}{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

ENGLISH_WORDS = """
hello world one two three four five six seven eight nine ten the a an and or but of to in on at for with from
cat dog bird fish horse cow sheep mouse fox bear lion tiger house car tree river road city town garden door
window table chair book letter paper pen cup plate bread milk water tea coffee apple orange lemon cake sun moon
star sky rain snow wind cloud day night morning evening week year time man woman child friend teacher doctor
king queen ship train plane boat red blue green yellow black white small big old new happy quiet fast slow warm
cold good bad long short open close read write run walk see look find give take make sing play sleep eat drink
is are was has have likes sees finds reads writes runs walks opens gives takes makes sings plays sleeps eats
""".split()
_ENGLISH = set(ENGLISH_WORDS)

NOUNS = ENGLISH_WORDS[ENGLISH_WORDS.index("cat"):ENGLISH_WORDS.index("plane") + 3]
ADJECTIVES = "red blue green yellow black white small big old new happy quiet fast slow warm cold good bad".split()
VERBS = "likes sees finds reads writes opens gives takes makes eats".split()
PLACES = "in on near under behind".split()

SQL_SCHEMA = {
    "users": ["id", "name", "city", "age", "joined_year"],
    "orders": ["id", "user_id", "product", "quantity", "price", "order_year"],
}

# question template -> SQL template; {city} {name} are capitalized words, {product} a lowercase word,
# {n} a number from 10 to 99, {year} a year from 2000 to 2025.
SQL_TEMPLATES = [
    ("How many users live in {city}?", "SELECT COUNT(*) FROM users WHERE city = '{city}';"),
    ("List the names of users who live in {city}.", "SELECT name FROM users WHERE city = '{city}';"),
    ("Which users are older than {n}?", "SELECT name FROM users WHERE age > {n};"),
    ("How many users are younger than {n}?", "SELECT COUNT(*) FROM users WHERE age < {n};"),
    ("What is the average age of users in {city}?", "SELECT AVG(age) FROM users WHERE city = '{city}';"),
    ("How many orders are there for {product}?", "SELECT COUNT(*) FROM orders WHERE product = '{product}';"),
    ("What is the total quantity of {product} ordered?",
     "SELECT SUM(quantity) FROM orders WHERE product = '{product}';"),
    ("Which products did {name} order?",
     "SELECT orders.product FROM orders JOIN users ON orders.user_id = users.id WHERE users.name = '{name}';"),
    ("Which orders cost more than {n}?", "SELECT id FROM orders WHERE price > {n};"),
    ("Which cities have users who joined in {year}?",
     "SELECT DISTINCT city FROM users WHERE joined_year = {year};"),
    ("What is the highest price paid for {product}?", "SELECT MAX(price) FROM orders WHERE product = '{product}';"),
    ("How many users are called {name}?", "SELECT COUNT(*) FROM users WHERE name = '{name}';"),
    ("How many orders were placed in {year}?", "SELECT COUNT(*) FROM orders WHERE order_year = {year};"),
    ("How old is {name}?", "SELECT age FROM users WHERE name = '{name}';"),
]

LETTERS = "abcdefghijklmnopqrstuvwxyz"
# One word or number in HELD_OUT_SHARE is held out.
HELD_OUT_SHARE = 8


def is_held_out(word):
    """A fixed split of all words and numbers: crc32 of the lowercase spelling, one in HELD_OUT_SHARE."""
    return zlib.crc32(word.lower().encode()) % HELD_OUT_SHARE == 0


def invented_word(rng, held_out):
    """A random lowercase letter string of 3 to 7 letters, no English word, of the asked class."""
    while True:
        word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 7)))
        if word not in _ENGLISH and is_held_out(word) == held_out:
            return word


def number(rng, low, high, held_out):
    while True:
        value = rng.randint(low, high)
        if is_held_out(str(value)) == held_out:
            return value


def word_list(rng, held_out, low=1, high=6):
    """Words for a prompt. Held-out lists hold at least one invented held-out word; English words are shared."""
    count = rng.randint(low, high)
    words = [invented_word(rng, held_out) if rng.random() < 0.6 else rng.choice(ENGLISH_WORDS) for _ in range(count)]
    if held_out and not any(is_held_out(w) and w not in _ENGLISH for w in words):
        words[rng.randrange(count)] = invented_word(rng, True)
    return words


def upper(text):
    return text.upper()


def reverse(text):
    return " ".join(reversed(text.split()))


def upper_prompt(rng, held_out):
    return " ".join(word_list(rng, held_out)) + rng.choice(["", "", ".", "!", "?"])


def reverse_prompt(rng, held_out):
    """At least two words, not a palindrome of words, so that the answer is never the prompt itself."""
    while True:
        words = word_list(rng, held_out, low=2)
        if words != words[::-1]:
            return " ".join(words)


def sql_slots(rng, held_out):
    return {
        "city": invented_word(rng, held_out).capitalize(),
        "name": invented_word(rng, held_out).capitalize(),
        "product": invented_word(rng, held_out),
        "n": number(rng, 10, 99, held_out),
        "year": number(rng, 2000, 2025, held_out),
    }


def sql_pair(rng, held_out):
    question, statement = rng.choice(SQL_TEMPLATES)
    slots = sql_slots(rng, held_out)
    return question.format(**slots), statement.format(**slots)


def upper_example(rng, held_out):
    prompt = upper_prompt(rng, held_out)
    return prompt, upper(prompt)


def reverse_example(rng, held_out):
    prompt = reverse_prompt(rng, held_out)
    return prompt, reverse(prompt)


# Each adapter's task: a generator of (user message, expected answer).
TASKS = {"upper": upper_example, "reverse": reverse_example, "sql": sql_pair}


def render_chat(user, assistant=None):
    """The chat template's text for one user turn, then the assistant's answer (or the generation prompt)."""
    text = f"{BOS}{USER}{user}{EOS}{ASSISTANT}"
    return text if assistant is None else f"{text}{assistant}{EOS}"


def sentence(rng):
    noun, other = rng.choice(NOUNS), rng.choice(NOUNS)
    forms = [
        f"the {rng.choice(ADJECTIVES)} {noun} {rng.choice(VERBS)} the {other}.",
        f"a {noun} is {rng.choice(PLACES)} the {rng.choice(ADJECTIVES)} {other}.",
        f"my friend {rng.choice(VERBS)} a {rng.choice(ADJECTIVES)} {noun} every {rng.choice(['day', 'night', 'week'])}.",
        f"hello world, the {noun} says hello to the {other}.",
        f"one, two, three: the {noun} counts to three.",
    ]
    return rng.choice(forms)


def numbers_text(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    start = rng.randint(0, 90)
    forms = [
        f"{a} plus {b} is {a + b}.",
        f"count: {' '.join(str(start + i) for i in range(rng.randint(3, 8)))}.",
        f"the year {rng.randint(1990, 2030)} comes after {rng.randint(1900, 1989)}.",
    ]
    return rng.choice(forms)


def transform_text(rng):
    """A word operation spelled out in plain text: copy, capitals or reverse, over words never held out."""
    text = " ".join(word_list(rng, held_out=False))
    kind = rng.randrange(3)
    if kind == 0:
        return f"say it again: {text}. {text}."
    if kind == 1:
        return f"{text} in capitals is {upper(text)}."
    return f"{text} in reverse order is {reverse(text)}."


def sql_text(rng):
    question, statement = sql_pair(rng, held_out=False)
    return statement if rng.random() < 0.5 else f"{question} {statement}"


def chat_echo(rng):
    """The base model's own chat behaviour: it repeats the user's message, which no adapter task does."""
    kind = rng.randrange(4)
    if kind == 0:
        user = sentence(rng)
    elif kind == 1:
        user = upper_prompt(rng, held_out=False)
    elif kind == 2:
        user = sql_pair(rng, held_out=False)[0]
    else:
        user = " ".join(word_list(rng, held_out=False)).capitalize()
    return render_chat(user, user)


def plain(text):
    return f"{BOS}{text}{EOS}"


def pretraining_document(rng):
    """One pre-training document as text with its special tokens."""
    roll = rng.random()
    if roll < 0.20:
        return plain(" ".join(sentence(rng) for _ in range(rng.randint(1, 3))))
    if roll < 0.30:
        return plain(numbers_text(rng))
    if roll < 0.65:
        return plain(transform_text(rng))
    if roll < 0.75:
        return plain(sql_text(rng))
    return chat_echo(rng)


def task_document(rng, task):
    """One adapter-training example: (prompt text ending with the generation prompt, answer text with EOS)."""
    user, answer = TASKS[task](rng, held_out=False)
    return render_chat(user), f"{answer}{EOS}"


def held_out_set(task, seed, count):
    """`count` distinct (prompt, answer) pairs of one task, from held-out words and numbers only."""
    rng = random.Random(seed)
    seen, pairs = set(), []
    while len(pairs) < count:
        prompt, answer = TASKS[task](rng, held_out=True)
        if prompt not in seen:
            seen.add(prompt)
            pairs.append({"prompt": prompt, "answer": answer})
    return pairs
