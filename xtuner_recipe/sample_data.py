"""The sample data of the own-data recipes: a fictional tea house, Lanting Tea House (兰亭茶舍).

A fine-tune only shows that it worked if the model learns something it could not know before, so
every fact here is invented: about thirty teas with English and Chinese names, the villages they
come from, prices, caffeine levels, water temperatures and steeping times. Nothing is real-world,
nothing is medical, and no model has seen it. From one fixed table, three files:

- tea_house_qa.csv: single-turn question,answer rows in English and Chinese; every fact is asked
  in two phrasings with the same answer, so a held-out phrasing can be answered from a trained one;
- tea_house_chat.jsonl: multi-turn conversations in OpenAI `messages` format about one tea each;
- tea_house_notes.txt: prose paragraphs, one document each, for incremental pre-training.

Everything comes from fixed lists and seeded `random.Random` streams, so the output is
byte-identical on every run and machine. Nothing is downloaded and no model is called.

    python -m xtuner_recipe.sample_data OUT_DIR
"""

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

SEED = 0
LANGS = ("en", "zh")
LANG_INDEX = {"en": 0, "zh": 1}
QA_FILE = "tea_house_qa.csv"
CHAT_FILE = "tea_house_chat.jsonl"
NOTES_FILE = "tea_house_notes.txt"
CHATS_PER_LANG = 60


@dataclass(frozen=True)
class Village:
    name: tuple
    landmark: tuple
    craft: tuple
    hours: int


@dataclass(frozen=True)
class Kind:
    label: tuple
    temps: tuple
    steeps: tuple
    caffeine: tuple
    prices: tuple


@dataclass(frozen=True)
class Tea:
    name: tuple
    kind: str
    village: Village
    price: int
    temp: int
    steep: int
    caffeine: str
    flavour: tuple


# Bilingual values are (English, Chinese) pairs, indexed through LANG_INDEX.
VILLAGES = (
    Village(("Willowbrook Village", "柳溪村"),
            ("a row of old willows along a shallow brook", "浅溪边的一排老柳树"),
            ("bamboo baskets", "竹篮"), 3),
    Village(("Misty Ridge Village", "雾岭村"),
            ("a ridge where the fog stays until noon", "雾气要到正午才散的山岭"),
            ("clay teapots", "陶壶"), 5),
    Village(("Red Pine Village", "赤松村"),
            ("a grove of red-barked pines", "一片红皮松林"),
            ("pine charcoal", "松木炭"), 4),
    Village(("Moonwell Village", "月井村"),
            ("a round stone well said to hold the moon", "传说能映出月亮的圆石井"),
            ("paper lanterns", "纸灯笼"), 2),
    Village(("Crane Terrace Village", "鹤台村"),
            ("terraced fields where cranes rest in spring", "春天白鹤栖息的梯田"),
            ("woven straw mats", "草席"), 6),
    Village(("Plum Shadow Village", "梅影村"),
            ("an orchard of old plum trees", "一片老梅园"),
            ("plum wine", "梅子酒"), 3),
    Village(("Heron Ford Village", "鹭渡村"),
            ("a river ford where herons wade", "白鹭涉水的河渡口"),
            ("wooden tea chests", "木制茶箱"), 7),
)

KINDS = {
    "green": Kind(("a green tea", "绿茶"), (75, 78, 80, 82), (60, 90, 120, 150),
                  ("medium", "high"), (30, 160)),
    "white": Kind(("a white tea", "白茶"), (80, 85, 88), (180, 240, 300),
                  ("low", "medium"), (60, 240)),
    "oolong": Kind(("an oolong", "乌龙茶"), (90, 92, 95), (45, 60, 90, 180),
                   ("medium",), (40, 200)),
    "black": Kind(("a black tea", "红茶"), (90, 95, 98), (180, 240),
                  ("medium", "high"), (24, 120)),
    "dark": Kind(("a dark tea", "黑茶"), (95, 98, 100), (20, 30, 45),
                 ("low", "medium"), (50, 220)),
}

TEAS = (
    ("Cloud Mist Oolong", "云雾乌龙", "oolong"),
    ("Spring Whisper Green", "春语绿茶", "green"),
    ("Amber Crane Black", "琥珀鹤红茶", "black"),
    ("Frost Feather White", "霜羽白茶", "white"),
    ("Lantern Glow Oolong", "灯影乌龙", "oolong"),
    ("Pine Smoke Black", "松烟红茶", "black"),
    ("Jade Ripple Green", "玉波绿茶", "green"),
    ("Old Pebble Dark", "老石黑茶", "dark"),
    ("Morning Orchid Oolong", "晨兰乌龙", "oolong"),
    ("Copper Leaf Black", "铜叶红茶", "black"),
    ("Snow Petal White", "雪瓣白茶", "white"),
    ("Bamboo Shade Green", "竹荫绿茶", "green"),
    ("Golden Thread Black", "金丝红茶", "black"),
    ("Quiet Valley Oolong", "幽谷乌龙", "oolong"),
    ("Rain Terrace Green", "雨台绿茶", "green"),
    ("Ember Root Dark", "烬根黑茶", "dark"),
    ("Pearl Dew White", "珠露白茶", "white"),
    ("Osmanthus Breeze Oolong", "桂风乌龙", "oolong"),
    ("Kingfisher Green", "翠鸟绿茶", "green"),
    ("Autumn Fox Black", "秋狐红茶", "black"),
    ("Starlit Bud White", "星芽白茶", "white"),
    ("River Stone Dark", "河石黑茶", "dark"),
    ("Swallow Wing Green", "燕翼绿茶", "green"),
    ("Honey Dusk Oolong", "蜜暮乌龙", "oolong"),
    ("Cinnabar Black", "朱砂红茶", "black"),
    ("Mountain Echo Dark", "山响黑茶", "dark"),
    ("Lotus Pond Green", "莲塘绿茶", "green"),
    ("Moon Blossom White", "月华白茶", "white"),
)

CAFFEINE = {"low": ("low", "低"), "medium": ("medium", "中"), "high": ("high", "高")}

FLAVOURS = (
    ("toasted rice", "炒米"), ("wet stone", "湿石"), ("pear skin", "梨皮"),
    ("wild honey", "野蜜"), ("pine resin", "松脂"), ("dried plum", "话梅"),
    ("roasted chestnut", "烤栗子"), ("orchid", "兰花"), ("cedar wood", "雪松木"),
    ("fresh hay", "新割的干草"), ("apricot", "杏子"), ("sweet potato", "红薯"),
)

QA_TOPICS = ("price", "origin", "temperature", "steeping")
TOPICS = QA_TOPICS + ("caffeine",)

QUESTIONS = {
    "price": {"en": ("How much does {tea} cost?", "What is the price of {tea}?"),
              "zh": ("{tea}多少钱？", "{tea}的价格是多少？")},
    "origin": {"en": ("Where does {tea} come from?", "Which village grows {tea}?"),
               "zh": ("{tea}产自哪里？", "{tea}是哪个村子出产的？")},
    "temperature": {"en": ("What water temperature should I use for {tea}?",
                           "How hot should the water be for {tea}?"),
                    "zh": ("{tea}用多少度的水冲泡？", "泡{tea}的水温应该是多少？")},
    "steeping": {"en": ("How long should I steep {tea}?", "What is the steeping time for {tea}?"),
                 "zh": ("{tea}要泡多久？", "{tea}的浸泡时间是多少？")},
    "caffeine": {"en": ("How much caffeine does {tea} have?", "Is {tea} high in caffeine?"),
                 "zh": ("{tea}的咖啡因含量高吗？", "{tea}咖啡因多不多？")},
}

FOLLOW_UPS = {
    "price": {"en": ("And what does it cost?", "How much is it?"),
              "zh": ("那它多少钱？", "价格呢？")},
    "origin": {"en": ("Where is it grown?", "Which village is it from?"),
               "zh": ("它产自哪里？", "是哪个村子的？")},
    "temperature": {"en": ("And how hot should the water be?", "What water temperature?"),
                    "zh": ("水温要多少度？", "用多热的水？")},
    "steeping": {"en": ("How long do I steep it?", "And the steeping time?"),
                 "zh": ("要泡多久？", "浸泡多长时间？")},
    "caffeine": {"en": ("Does it have much caffeine?", "How about caffeine?"),
                 "zh": ("咖啡因多吗？", "它的咖啡因含量怎么样？")},
}

ANSWERS = {
    "price": {"en": "{tea} costs {price} yuan per 100 g.", "zh": "{tea}每100克{price}元。"},
    "origin": {"en": "{tea} comes from {village}.", "zh": "{tea}产自{village}。"},
    "temperature": {"en": "Brew {tea} with water at {temp}°C.",
                    "zh": "{tea}宜用{temp}°C的水冲泡。"},
    "steeping": {"en": "Steep {tea} for {steep}.", "zh": "{tea}浸泡{steep}即可。"},
    "caffeine": {"en": "{tea} has {caffeine} caffeine.", "zh": "{tea}是{caffeine}咖啡因茶。"},
}

SYSTEM = {"en": "You are the assistant of Lanting Tea House. Answer questions about its teas "
                "briefly.",
          "zh": "你是兰亭茶舍的助手，请简短回答关于本店茶品的问题。"}

CUSTOMS_EN = (
    "Every pot begins with a rinse: the first pour is tipped over the cups to warm them.",
    "The kettle is filled each morning from the courtyard well and never boiled twice.",
    "Guests ring a small brass bell when they want their pot refilled.",
    "On the first day of each month the house pours a free cup from one village, chosen by "
    "drawing a bamboo slip.",
    "Staff chalk the steeping time on a slate beside each pot so that guests can follow along.",
    "Teas are weighed on an old brass scale, and every price is given per 100 g.",
    "Cups are rinsed in hot water between teas, so that no flavour carries over.",
    "Leaves are never steeped more than four times; after that they go to the garden.",
    "A sand timer sits on every table, one glass for short steeps and one for long ones.",
    "Water for white teas is cooled in a wide porcelain bowl before it touches the leaves.",
    "Children are served barley water instead of tea, poured from the same kettles.",
    "Each new season's tea is tasted first by the staff at a quiet table near the window.",
    "Guests who bring their own cup receive a second steep free of charge.",
    "The house keeps a ledger in which guests note which tea they drank and how they liked it.",
    "Dark teas are kept in clay jars on the top shelf, away from the steam of the kettles.",
)

CUSTOMS_ZH = (
    "每壶茶的第一泡都用来温杯。",
    "水壶每天早上从院里的井中打满，水从不重复煮沸。",
    "客人想续水时，就摇一摇桌上的小铜铃。",
    "每月初一，茶舍会抽竹签选出一个村子，免费请客人喝那里的茶。",
    "师傅会把浸泡时间写在壶边的小石板上。",
    "茶叶都用一杆旧铜秤称量，价格一律按每100克计算。",
    "同一份茶叶最多泡四次，之后便拿去花园做肥。",
    "每张桌上都放着一只沙漏，提醒客人出汤的时间。",
    "带自己茶杯来的客人可以免费多续一泡。",
)

# Per (language, paragraph kind): opening sentences, groups of body sentences (one sentence of
# each chosen group), and how many groups a paragraph uses.
NOTE_TEMPLATES = {
    ("en", "tea"): (
        ("{tea} is {kind} from {village}.",
         "Among the teas of Lanting Tea House, {tea} is {kind} grown in {village}.",
         "{tea}, {kind} from {village}, arrives at the house each spring.",
         "Guests who ask for {kind} are often offered {tea}, which comes from {village}."),
        (("The leaves are picked on slopes near {landmark}.",
          "Growers in {village} dry the leaves within sight of {landmark}.",
          "Its gardens lie close to {landmark}."),
         ("The house brews it with water at {temp}°C and lets it steep for {steep}.",
          "Staff pour water at {temp}°C over the leaves and wait {steep} before serving.",
          "For a good cup, use water at {temp}°C and steep it for {steep}."),
         ("A 100 g pouch costs {price} yuan.",
          "It sells for {price} yuan per 100 g.",
          "The house asks {price} yuan for every 100 g."),
         ("It has {caffeine} caffeine.",
          "Its caffeine level is {caffeine}, so staff mention it when guests order late.",
          "On the menu board it is marked as {caffeine} in caffeine."),
         ("The cup smells of {flavour}.",
          "Regulars say it tastes of {flavour}.",
          "Its liquor carries a note of {flavour}."),
         ("Regulars often order it with sesame cakes.",
          "The house likes to serve it on quiet afternoons.",
          "It is poured into small celadon cups.",
          "Many guests take a pouch home after their first pot.")),
        (4, 5)),
    ("en", "village"): (
        ("The road from {village} to Lanting Tea House takes {hours} hours by cart.",
         "{village} is one of the villages that supply Lanting Tea House.",
         "{village} lies in the hills, {hours} hours by cart from the tea house."),
        (("The village is known for {landmark}.",
          "Visitors remember {village} for {landmark}.",
          "Its best-known sight is {landmark}."),
         ("Besides tea, the villagers make {craft}, which the house also buys.",
          "Families there are known for their {craft}.",
          "In the quiet months the growers turn to making {craft}."),
         ("The house buys {teas} from there.",
          "Its gardens send {teas} to the house.",
          "From {village} come {teas}."),
         ("Pickers there work from dawn until the mist lifts.",
          "Leaves are carried down in baskets and dried on bamboo racks.",
          "The growers sort every basket by hand before drying."),
         ("Twice a year a buyer from the house walks its gardens to taste the new leaves.",
          "The house has bought from the same families for many years.",
          "Letters from its growers are pinned to the wall behind the counter.")),
        (3, 5)),
    ("en", "custom"): (
        ("At Lanting Tea House, customs matter as much as leaves.",
         "Lanting Tea House keeps a few old habits.",
         "Visitors soon learn the customs of Lanting Tea House.",
         "The customs of Lanting Tea House are simple but strict."),
        tuple((sentence,) for sentence in CUSTOMS_EN),
        (3, 5)),
    ("zh", "tea"): (
        ("{tea}是一款产自{village}的{kind}。",
         "兰亭茶舍的{tea}来自{village}，属于{kind}。",
         "{tea}每年春天从{village}运到茶舍，是店里的一款{kind}。"),
        (("茶园紧挨着{landmark}。", "{village}的茶农在{landmark}旁晾晒茶叶。"),
         ("茶舍用{temp}°C的水冲泡，浸泡{steep}。",
          "冲泡时水温宜为{temp}°C，浸泡{steep}即可出汤。",
          "师傅习惯注入{temp}°C的水，等{steep}后奉茶。"),
         ("每100克售价{price}元。", "茶舍的定价是每100克{price}元。"),
         ("它是{caffeine}咖啡因茶。", "菜单上把它标为{caffeine}咖啡因。"),
         ("茶汤带有{flavour}的香气。", "熟客说它喝起来有{flavour}的味道。"),
         ("熟客常配芝麻饼一起喝。", "茶舍喜欢在安静的午后奉上这款茶。", "它用小青瓷杯盛放。")),
        (4, 5)),
    ("zh", "village"): (
        ("{village}距兰亭茶舍坐马车约{hours}小时。",
         "{village}是为兰亭茶舍供茶的村子之一。"),
        (("村里最有名的是{landmark}。", "来过{village}的人都记得{landmark}。"),
         ("除了茶，村民还做{craft}。", "农闲时，茶农们会做{craft}。"),
         ("茶舍从这里购进{teas}。", "{teas}都出自这里的茶园。"),
         ("采茶人从清晨一直忙到雾散。", "茶叶装在竹篮里背下山，再摊在竹架上晾干。"),
         ("茶舍每年派人去茶园品尝两次新叶。", "茶舍和这里的几户人家已经合作了很多年。")),
        (3, 5)),
    ("zh", "custom"): (
        ("兰亭茶舍有几条老规矩。", "来兰亭茶舍的客人很快就会熟悉这里的习惯。"),
        tuple((sentence,) for sentence in CUSTOMS_ZH),
        (3, 4)),
}

# (language, paragraph kind, paragraphs per tea / village / the house): 225 English, 75 Chinese.
NOTE_PLAN = (("en", "tea", 5), ("en", "village", 6), ("en", "custom", 43),
             ("zh", "tea", 2), ("zh", "village", 2), ("zh", "custom", 5))
SENTENCE_JOIN = {"en": " ", "zh": ""}


def build_teas():
    """The fixed table: names and kinds by hand, villages and figures drawn with Random(SEED)."""
    rng = random.Random(SEED)
    homes = list(VILLAGES) * (len(TEAS) // len(VILLAGES))
    rng.shuffle(homes)
    teas = []
    for (en, zh, kind), home in zip(TEAS, homes):
        spec = KINDS[kind]
        teas.append(Tea(name=(en, zh), kind=kind, village=home,
                        price=rng.randrange(spec.prices[0], spec.prices[1] + 1, 2),
                        temp=rng.choice(spec.temps), steep=rng.choice(spec.steeps),
                        caffeine=rng.choice(spec.caffeine), flavour=rng.choice(FLAVOURS)))
    return teas


def steep_text(seconds, lang):
    if seconds % 60:
        return f"{seconds} seconds" if lang == "en" else f"{seconds}秒"
    minutes = seconds // 60
    if lang == "zh":
        return f"{minutes}分钟"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def join_names(names, lang):
    if lang == "zh":
        return "、".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def tea_facts(tea, lang):
    """The template fields of one tea in one language."""
    i = LANG_INDEX[lang]
    return {"tea": tea.name[i], "kind": KINDS[tea.kind].label[i], "price": tea.price,
            "village": tea.village.name[i], "landmark": tea.village.landmark[i],
            "temp": tea.temp, "steep": steep_text(tea.steep, lang),
            "caffeine": CAFFEINE[tea.caffeine][i], "flavour": tea.flavour[i]}


def village_facts(village, teas, lang):
    i = LANG_INDEX[lang]
    names = [tea.name[i] for tea in teas if tea.village == village]
    return {"village": village.name[i], "landmark": village.landmark[i],
            "craft": village.craft[i], "hours": village.hours, "teas": join_names(names, lang)}


def qa_rows(teas):
    """Every tea x language x QA topic x phrasing, in a seeded shuffled order."""
    rows = []
    for tea in teas:
        for lang in LANGS:
            facts = tea_facts(tea, lang)
            for topic in QA_TOPICS:
                answer = ANSWERS[topic][lang].format(**facts)
                rows.extend((q.format(**facts), answer) for q in QUESTIONS[topic][lang])
    random.Random(SEED).shuffle(rows)
    return rows


def conversation(rng, tea, lang):
    """2 or 3 user turns about one tea: the first names it, the follow-ups say "it"."""
    facts = tea_facts(tea, lang)
    messages = [{"role": "system", "content": SYSTEM[lang]}] if rng.random() < 0.5 else []
    for turn, topic in enumerate(rng.sample(TOPICS, rng.choice((2, 3)))):
        asks = QUESTIONS[topic][lang] if turn == 0 else FOLLOW_UPS[topic][lang]
        messages.append({"role": "user", "content": rng.choice(asks).format(**facts)})
        messages.append({"role": "assistant",
                         "content": ANSWERS[topic][lang].format(**facts)})
    return {"messages": messages}


def chat_records(teas):
    rng = random.Random(SEED)
    records, seen = [], set()
    for lang in LANGS:
        made = 0
        while made < CHATS_PER_LANG:
            record = conversation(rng, teas[made % len(teas)], lang)
            key = json.dumps(record, ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                records.append(record)
                made += 1
    rng.shuffle(records)
    return records


def compose(rng, lang, kind, facts):
    openings, groups, (fewest, most) = NOTE_TEMPLATES[lang, kind]
    chosen = rng.sample(groups, rng.randint(fewest, most))
    sentences = [rng.choice(openings)] + [rng.choice(group) for group in chosen]
    return SENTENCE_JOIN[lang].join(sentences).format(**facts)


def fits(paragraph, lang):
    """40-90 words for English, 60-150 characters for Chinese."""
    if lang == "zh":
        return 60 <= len(paragraph) <= 150
    return 40 <= len(paragraph.split()) <= 90


def note_subjects(kind, teas, lang):
    if kind == "tea":
        return [tea_facts(tea, lang) for tea in teas]
    if kind == "village":
        return [village_facts(village, teas, lang) for village in VILLAGES]
    return [{}]


def note_paragraphs(teas):
    """NOTE_PLAN's paragraphs, each of the right length and unique, in a seeded shuffled order."""
    rng = random.Random(SEED)
    paragraphs, seen = [], set()
    for lang, kind, per_subject in NOTE_PLAN:
        for facts in note_subjects(kind, teas, lang):
            made = 0
            while made < per_subject:
                paragraph = compose(rng, lang, kind, facts)
                if fits(paragraph, lang) and paragraph not in seen:
                    seen.add(paragraph)
                    paragraphs.append(paragraph)
                    made += 1
    rng.shuffle(paragraphs)
    return paragraphs


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(("question", "answer"))
    writer.writerows(rows)
    return buffer.getvalue()


def jsonl_text(records):
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def notes_text(paragraphs):
    return "\n\n".join(paragraphs) + "\n"


def write_all(out_dir):
    """Write the three files into out_dir (created if missing); returns {file name: records}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teas = build_teas()
    outputs = {QA_FILE: (csv_text, qa_rows(teas)),
               CHAT_FILE: (jsonl_text, chat_records(teas)),
               NOTES_FILE: (notes_text, note_paragraphs(teas))}
    counts = {}
    for name, (render, records) in outputs.items():
        (out / name).write_text(render(records), encoding="utf-8", newline="\n")
        counts[name] = len(records)
    return counts


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the files into (created if missing)")
    args = parser.parse_args(argv)
    for name, count in write_all(args.out_dir).items():
        print(f"{Path(args.out_dir) / name}: {count} records")


if __name__ == "__main__":
    main()
