//! English (en-GB) names with rough relative frequencies, nicknames and spelling variants.
//!
//! Frequencies are per 100,000 people, rounded, in the spirit of the ONS's published counts:
//! enough to make "Smith" and "Jones" as common as they are and to leave a long tail of rare
//! names. Lists are `name count` pairs in one string each, parsed once.

/// Surnames of England and Wales, most common first.
pub const SURNAMES: &str = "Smith 1150 Jones 750 Williams 600 Taylor 520 Brown 480 Davies 420 \
Evans 330 Wilson 320 Thomas 300 Johnson 290 Roberts 290 Robinson 250 Thompson 250 Wright 245 \
Walker 240 White 230 Edwards 225 Hughes 220 Green 215 Hall 210 Lewis 205 Harris 200 Clarke 195 \
Patel 190 Jackson 185 Wood 180 Turner 175 Martin 170 Cooper 165 Hill 165 Ward 160 Morris 160 \
Moore 155 Clark 150 Lee 150 King 145 Baker 145 Harrison 140 Morgan 140 Allen 135 James 135 \
Scott 130 Phillips 130 Watson 125 Davis 125 Parker 120 Price 120 Bennett 115 Young 115 \
Griffiths 110 Mitchell 110 Kelly 105 Cook 105 Carter 105 Richardson 100 Bailey 100 Collins 100 \
Bell 95 Shaw 95 Murphy 95 Miller 90 Cox 90 Richards 90 Khan 90 Marshall 85 Anderson 85 \
Simpson 85 Ellis 85 Adams 80 Singh 80 Begum 80 Wilkinson 80 Foster 75 Chapman 75 Powell 75 \
Webb 75 Rogers 70 Gray 70 Mason 70 Ali 70 Hunt 70 Hussain 70 Campbell 65 Matthews 65 Owen 65 \
Palmer 65 Holmes 60 Mills 60 Barnes 60 Knight 60 Lloyd 60 Butler 60 Russell 58 Barker 58 \
Fisher 58 Stevens 56 Jenkins 56 Murray 55 Dixon 55 Harvey 55 Graham 54 Pearson 54 Ahmed 54 \
Fletcher 52 Walsh 52 Kaur 52 Gibson 50 Howard 50 Andrews 50 Stewart 48 Elliott 48 Reynolds 48 \
Saunders 47 Payne 47 Fox 46 Ford 46 Pearce 45 Day 45 Brooks 45 West 44 Lawrence 44 Cole 43 \
Atkinson 43 Bradley 42 Spencer 42 Gill 41 Dawson 41 Ball 40 Burton 40 OBrien 40 Watts 39 \
Rose 39 Booth 38 Perry 38 Ryan 38 Grant 37 Wells 37 Armstrong 36 Francis 36 Rees 36 Hayes 35 \
Hart 35 Hudson 35 Newman 34 Barrett 34 Webster 34 Hunter 33 Gregory 33 Carr 33 Lowe 32 Page 32 \
Marsh 32 Riley 31 Dunn 31 Woods 31 Parsons 30 Berry 30 Stone 30 Reid 29 Holland 29 Hawkins 29 \
Harding 28 Porter 28 Robertson 28 Newton 27 Oliver 27 Reed 27 Kennedy 26 Williamson 26 Bird 26 \
Gardner 25 Shah 25 Dean 25 Lane 24 Cooke 24 Bates 24 Henderson 23 Parry 23 Burgess 23 Bishop 22 \
Walton 22 Burns 22 Nicholson 21 Shepherd 21 Ross 21 Cross 20 Long 20 Freeman 20 Warren 19 \
Nicholls 19 Hamilton 19 Byrne 18 Sutton 18 McDonald 18 Yates 18 Hodgson 17 Robson 17 Curtis 17 \
Hopkins 16 OConnor 16 Chowdhury 16 Mahmood 15 Iqbal 15 Rahman 15 Akhtar 14 Nowak 14 \
Kowalski 12 Okafor 12 Mensah 11 Nguyen 11 Wang 11 Chen 10 Li 10 Zhang 9 Osei 9 Adeyemi 9";

/// Syllables for the long tail of rare English surnames ("Ashworth", "Thornbury").
pub const TAIL_FIRST: &[&str] = &[
    "Ash", "Black", "Brad", "Whit", "Thorn", "Hol", "Wether", "Brom", "Clay", "Ald", "Pen", "Sal",
    "Stan", "Wil", "Hart", "Fair", "Cold", "Red", "Hal", "Brook", "Bur", "Chad", "Dun", "Elm",
    "Fen", "Glad", "Hay", "Ing", "Kirk", "Lang", "Mar", "Nor", "Oak", "Pick", "Rad", "Shel", "Tat",
    "Up", "Wad", "Yard", "Bram", "Cress", "Dray", "Ever", "Fern", "Gos", "Hurst", "Lock", "Mill",
    "Ned", "Pud", "Ruther", "Sand", "Tew", "Wick",
];
/// See [`TAIL_FIRST`].
pub const TAIL_SECOND: &[&str] = &[
    "worth", "bury", "ley", "ton", "ford", "wood", "field", "ham", "by", "combe", "well", "more",
    "stone", "land", "wick", "cliffe", "den", "hurst", "shaw", "thwaite", "ridge", "borough",
    "stead", "low", "gate",
];

/// Given names of people born before 1960, then 1960-1989, then from 1990, by sex.
pub const MALE_OLD: &str = "John 900 David 700 Michael 550 Peter 520 Robert 480 William 450 \
James 420 Brian 400 Anthony 380 Alan 360 Kenneth 340 Richard 320 Thomas 300 Christopher 280 \
George 270 Ronald 260 Roger 250 Keith 240 Colin 230 Raymond 220 Derek 210 Dennis 200 Geoffrey \
190 Terence 180 Barry 175 Graham 170 Frank 165 Harold 160 Arthur 155 Stanley 150 Leslie 145 \
Frederick 140 Eric 135 Norman 130 Gordon 125 Edward 120 Charles 115 Bernard 110 Albert 105 \
Douglas 100 Malcolm 95 Gerald 90 Leonard 85 Donald 80 Clifford 60 Cyril 50 Percy 30 Wilfred 25";
/// See [`MALE_OLD`].
pub const MALE_MID: &str = "David 800 Paul 700 Mark 680 Andrew 650 Michael 600 Stephen 580 \
Richard 500 Christopher 480 Robert 450 Ian 420 Simon 400 Peter 380 John 380 Darren 350 \
Gary 340 Neil 320 Martin 300 Matthew 300 Jason 280 Lee 270 Craig 260 Kevin 250 Anthony 240 \
James 230 Jonathan 200 Timothy 180 Philip 170 Nicholas 170 Daniel 160 Wayne 150 Dean 140 \
Carl 130 Shaun 120 Stuart 115 Graham 110 Adrian 100 Russell 90 Scott 90 Gareth 85 Julian 60 \
Mohammed 60 Imran 40 Rajesh 30 Sanjay 25 Tariq 20";
/// See [`MALE_OLD`].
pub const MALE_NEW: &str = "Oliver 650 Jack 640 Harry 600 James 560 Thomas 520 Joshua 480 \
George 470 William 460 Charlie 450 Daniel 420 Samuel 400 Jacob 390 Alfie 360 Noah 350 Oscar \
340 Ethan 330 Mohammed 320 Benjamin 300 Lewis 290 Joseph 280 Alexander 270 Max 260 Dylan 250 \
Ryan 240 Callum 230 Liam 220 Adam 220 Leo 210 Isaac 200 Henry 200 Freddie 190 Archie 190 \
Logan 180 Jake 180 Luke 170 Matthew 170 Tyler 160 Connor 160 Kieran 150 Bradley 140 Aaron \
130 Theo 130 Arthur 120 Finley 110 Harrison 110 Reuben 80 Ibrahim 80 Yusuf 70 Arjun 60 \
Zachary 60 Rory 50 Ellis 50 Caleb 40 Jenson 40 Ezra 30 Kai 30";
/// See [`MALE_OLD`].
pub const FEMALE_OLD: &str = "Margaret 800 Mary 700 Patricia 500 Jean 480 Joan 460 Barbara \
440 Elizabeth 420 Sheila 380 Dorothy 360 Doreen 340 Brenda 320 Maureen 310 Pauline 300 \
Valerie 290 Christine 280 Irene 270 Sylvia 260 Eileen 250 Kathleen 240 Janet 230 Shirley 220 \
Betty 210 Joyce 200 Marjorie 190 Pamela 180 Ann 175 Susan 170 Carol 165 Sandra 160 Gillian \
150 Audrey 140 Elsie 130 Hilda 120 Ivy 110 Florence 100 Edna 90 Winifred 80 Gladys 70 \
Phyllis 60 Violet 50 Muriel 40 Olive 35 Beryl 30 Agnes 25";
/// See [`MALE_OLD`].
pub const FEMALE_MID: &str = "Sarah 750 Claire 650 Nicola 600 Emma 580 Lisa 560 Joanne 540 \
Michelle 520 Helen 500 Karen 480 Julie 460 Rachel 440 Louise 420 Amanda 400 Deborah 380 \
Susan 360 Tracey 340 Kelly 320 Samantha 300 Rebecca 280 Laura 270 Elizabeth 260 Victoria 250 \
Catherine 240 Jennifer 230 Alison 220 Angela 210 Caroline 200 Donna 190 Dawn 180 Kerry 170 \
Joanna 160 Katherine 150 Jacqueline 140 Sharon 130 Gemma 120 Lindsay 110 Natalie 100 \
Stephanie 90 Fiona 80 Zoe 75 Hayley 70 Nadia 40 Shabana 30 Priya 30 Ayesha 25";
/// See [`MALE_OLD`].
pub const FEMALE_NEW: &str = "Olivia 600 Emily 580 Amelia 560 Jessica 540 Isla 500 Ava 480 \
Sophie 470 Chloe 460 Lily 440 Grace 420 Ella 410 Mia 400 Isabella 380 Charlotte 370 Poppy \
360 Hannah 350 Lucy 340 Megan 330 Ruby 320 Evie 310 Holly 300 Freya 290 Lauren 280 Katie 270 \
Amy 260 Sophia 250 Daisy 240 Eleanor 230 Abigail 220 Millie 210 Phoebe 200 Scarlett 190 \
Ellie 180 Georgia 170 Matilda 160 Rosie 150 Evelyn 140 Florence 130 Alice 130 Harriet 120 \
Imogen 110 Maisie 100 Willow 90 Aisha 90 Fatima 80 Maryam 70 Zara 70 Sienna 60 Niamh 60 \
Esme 50 Orla 45 Aria 40 Iris 35 Nia 30";

/// Forms a name is often registered under: nicknames and short forms. Deliberately broader than
/// any nickname table a matcher might carry.
pub const NICKNAMES: &[(&str, &[&str])] = &[
    ("William", &["Bill", "Will", "Billy", "Liam"]),
    ("Robert", &["Bob", "Rob", "Bobby", "Robbie"]),
    ("Elizabeth", &["Liz", "Beth", "Lizzie", "Betty", "Eliza"]),
    ("Margaret", &["Maggie", "Peggy", "Meg", "Margo"]),
    ("Thomas", &["Tom", "Tommy"]),
    ("James", &["Jim", "Jimmy", "Jamie"]),
    ("Richard", &["Rick", "Dick", "Rich", "Richie"]),
    ("Michael", &["Mike", "Mick", "Mikey"]),
    ("Christopher", &["Chris", "Kit"]),
    ("Jonathan", &["Jon", "Jonny"]),
    ("Catherine", &["Kate", "Cathy", "Cath", "Katie"]),
    ("Katherine", &["Kate", "Kathy", "Kath", "Kitty"]),
    ("Alexander", &["Alex", "Sandy", "Xander"]),
    ("Samuel", &["Sam", "Sammy"]),
    ("Samantha", &["Sam", "Sammy"]),
    ("Daniel", &["Dan", "Danny"]),
    ("Matthew", &["Matt"]),
    ("Anthony", &["Tony", "Ant"]),
    ("Stephen", &["Steve"]),
    ("Andrew", &["Andy", "Drew"]),
    ("Edward", &["Ed", "Eddie", "Ted", "Ned"]),
    ("Joseph", &["Joe", "Joey"]),
    ("Benjamin", &["Ben", "Benny"]),
    ("Nicholas", &["Nick", "Nicky"]),
    ("Timothy", &["Tim"]),
    ("Peter", &["Pete"]),
    ("David", &["Dave", "Davy"]),
    ("Charles", &["Charlie", "Chas"]),
    ("Henry", &["Harry", "Hal"]),
    ("Jennifer", &["Jen", "Jenny"]),
    ("Rebecca", &["Becky", "Becca"]),
    ("Victoria", &["Vicky", "Tori"]),
    ("Susan", &["Sue", "Suzy"]),
    ("Deborah", &["Debbie", "Deb"]),
    ("Patricia", &["Pat", "Trish", "Patsy"]),
    ("Christine", &["Chris", "Chrissie"]),
    ("Jacqueline", &["Jackie"]),
    ("Joanne", &["Jo"]),
    ("Amanda", &["Mandy"]),
    ("Eleanor", &["Ellie", "Nell"]),
    ("Isabella", &["Bella", "Izzy"]),
    ("Olivia", &["Liv", "Livvy"]),
    ("Abigail", &["Abby", "Abi"]),
    ("Kenneth", &["Ken", "Kenny"]),
    ("Leonard", &["Len", "Lenny"]),
    ("Ronald", &["Ron", "Ronnie"]),
    ("Donald", &["Don"]),
    ("Gerald", &["Gerry"]),
    ("Terence", &["Terry", "Tel"]),
    ("Philip", &["Phil"]),
    ("Raymond", &["Ray"]),
    ("Frederick", &["Fred", "Freddie"]),
    ("Albert", &["Bert", "Al"]),
    ("Douglas", &["Doug"]),
    ("Harold", &["Harry", "Hal"]),
    ("Dorothy", &["Dot", "Dolly"]),
    ("Barbara", &["Babs", "Barb"]),
    ("Jessica", &["Jess", "Jessie"]),
    ("Megan", &["Meg"]),
    ("Zachary", &["Zach"]),
    ("Jacob", &["Jake"]),
    ("Mohammed", &["Mo"]),
    ("Gillian", &["Jill", "Gill"]),
    ("Pamela", &["Pam"]),
    ("Valerie", &["Val"]),
    ("Kathleen", &["Kath", "Kathy"]),
    ("Geoffrey", &["Geoff"]),
    ("Gregory", &["Greg"]),
    ("Stuart", &["Stu"]),
    ("Nicola", &["Nicky", "Nic"]),
    ("Alison", &["Ali"]),
    ("Caroline", &["Caz", "Carrie"]),
    ("Stephanie", &["Steph"]),
    ("Natalie", &["Nat"]),
    ("Florence", &["Flo", "Florrie"]),
    ("Harriet", &["Hattie"]),
    ("Matilda", &["Tilly", "Tilda"]),
    ("Charlotte", &["Lottie", "Charlie"]),
    ("Frances", &["Fran"]),
    ("Theodore", &["Theo", "Ted"]),
];

/// Spellings of one name that registration clerks and patients use interchangeably.
pub const VARIANTS: &[&[&str]] = &[
    &["Mohammed", "Muhammad", "Mohammad", "Mohamed"],
    &["Stephen", "Steven"],
    &["Catherine", "Katherine", "Kathryn"],
    &["Philip", "Phillip"],
    &["Geoffrey", "Jeffrey"],
    &["Sean", "Shaun", "Shawn"],
    &["Zoe", "Zoey"],
    &["Isla", "Islah"],
    &["Lewis", "Louis"],
    &["Ann", "Anne"],
    &["Clarke", "Clark"],
    &["Thompson", "Thomson"],
    &["Davies", "Davis"],
    &["Philips", "Phillips"],
    &["Reid", "Read", "Reed"],
    &["Gray", "Grey"],
    &["Hussain", "Hussein"],
    &["Chowdhury", "Choudhury"],
];

/// `name count` pairs parsed from one of the lists above.
pub fn parse(list: &'static str) -> Vec<(&'static str, u32)> {
    let words: Vec<&str> = list.split_whitespace().collect();
    words
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, count] => count.parse().ok().map(|c| (*name, c)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_parses_completely() {
        for list in [
            SURNAMES, MALE_OLD, MALE_MID, MALE_NEW, FEMALE_OLD, FEMALE_MID, FEMALE_NEW,
        ] {
            let words = list.split_whitespace().count();
            assert_eq!(parse(list).len() * 2, words, "{}", &list[..20]);
        }
    }
}
