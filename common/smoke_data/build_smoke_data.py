"""Build the tiny Portuguese extractive-QA smoke data set (SQuAD v1.1 format).

Provenance
----------
All paragraphs, questions and answers in this file were written from scratch
for this project in Brazilian Portuguese, in a neutral encyclopedic style.
No text was copied from Wikipedia or any other source.  The data is released
under the MIT License, like the rest of this repository.

Purpose
-------
The files are small on purpose.  They are used for offline smoke tests of the
SQuAD pipeline (preprocessing, training, evaluation) and for a "the tiny model
learns" test, so no download is needed.  They are NOT a benchmark.

Layout
------
* ``train.json``      -- one gold answer per question.
* ``validation.json`` -- about a third of the questions have 2 or 3 gold
  answers (exact spans of the same context), like the SQuAD v1.1 dev set.
* Articles are split between the files (no title appears in both).

``answer_start`` is never typed by hand: it is computed here with
``context.index(text)``, and every answer text must occur exactly once in its
context, so the offset is unambiguous.

Regenerate
----------
    python common/smoke_data/build_smoke_data.py

The output is deterministic (same input -> byte-identical JSON).  After
changing the texts, also rebuild the vocabulary with ``build_vocab.py``.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def P(text):
    """Collapse the whitespace of a triple-quoted paragraph into single spaces."""
    return " ".join(text.split())


# Each article: {"title": str, "paragraphs": [(context, [(question, [answers])])]}
# In TRAIN every question has exactly one answer.

TRAIN_ARTICLES = [
    {
        "title": "Rio Amazonas",
        "paragraphs": [
            (
                P("""O rio Amazonas é o maior rio do mundo em volume de água e um dos
                mais extensos do planeta. Ele nasce na cordilheira dos Andes, no Peru, e
                atravessa o norte do Brasil até desaguar no oceano Atlântico, no estado do
                Pará. No Brasil, o trecho entre a fronteira com o Peru e a confluência com o
                rio Negro, perto de Manaus, é conhecido como rio Solimões. A bacia
                hidrográfica do Amazonas cobre cerca de sete milhões de quilômetros
                quadrados e abrange territórios de vários países da América do Sul."""),
                [
                    ("Em que cordilheira nasce o rio Amazonas?", ["cordilheira dos Andes"]),
                    ("Em qual oceano o Amazonas deságua?", ["oceano Atlântico"]),
                    ("Que nome recebe o Amazonas entre a fronteira peruana e o encontro com o rio Negro?", ["rio Solimões"]),
                    ("Qual é a área aproximada da bacia do Amazonas?", ["sete milhões de quilômetros quadrados"]),
                    ("Perto de que cidade o Solimões encontra o rio Negro?", ["Manaus"]),
                ],
            ),
            (
                P("""O encontro das águas, perto de Manaus, é um dos fenômenos naturais
                mais conhecidos da região. Ali, as águas escuras do rio Negro e as águas
                barrentas do Solimões correm lado a lado por vários quilômetros sem se
                misturar. A diferença de temperatura, de velocidade e de densidade entre os
                dois rios explica o fenômeno. O rio Negro tem águas ácidas e pobres em
                sedimentos, enquanto o Solimões transporta grande quantidade de argila e
                areia vinda dos Andes. O encontro atrai turistas de todo o mundo e pode ser
                visto em passeios de barco."""),
                [
                    ("Qual fenômeno natural famoso ocorre perto de Manaus?", ["encontro das águas"]),
                    ("Como são as águas do rio Negro?", ["escuras"]),
                    ("O que explica que as águas dos dois rios não se misturem?", ["diferença de temperatura, de velocidade e de densidade"]),
                    ("Que materiais o Solimões transporta em grande quantidade?", ["argila e areia"]),
                    ("De que forma os turistas costumam observar o fenômeno?", ["passeios de barco"]),
                ],
            ),
            (
                P("""A pororoca é outro fenômeno associado ao Amazonas. Ela ocorre perto
                da foz, quando a maré do oceano avança contra a correnteza do rio e forma
                ondas que podem ultrapassar três metros de altura. O nome vem do tupi e
                significa, aproximadamente, estrondo. A pororoca é mais intensa nas luas
                nova e cheia, especialmente entre fevereiro e abril, e tornou-se conhecida
                entre surfistas, que conseguem percorrer longas distâncias sobre a mesma
                onda. O fenômeno também acontece em outros rios do Pará e do Amapá."""),
                [
                    ("Em que parte do rio acontece a pororoca?", ["perto da foz"]),
                    ("Que altura podem atingir as ondas da pororoca?", ["três metros"]),
                    ("De que língua vem a palavra pororoca?", ["tupi"]),
                    ("Em que período do ano a pororoca é mais forte?", ["entre fevereiro e abril"]),
                    ("Que esportistas se interessam pela pororoca?", ["surfistas"]),
                ],
            ),
        ],
    },
    {
        "title": "Salvador",
        "paragraphs": [
            (
                P("""Salvador é a capital do estado da Bahia e foi a primeira capital do
                Brasil, de 1549 a 1763. A cidade foi fundada por Tomé de Sousa, primeiro
                governador-geral da colônia, às margens da baía de Todos os Santos. Durante
                o período colonial, Salvador foi um dos portos mais importantes do Atlântico
                Sul, ligado ao comércio de açúcar e, tragicamente, ao tráfico de pessoas
                escravizadas trazidas da África. Essa história deixou marcas profundas na
                cultura, na religião e na culinária da cidade."""),
                [
                    ("De que estado Salvador é a capital?", ["Bahia"]),
                    ("Até que ano Salvador foi a capital do Brasil?", ["1763"]),
                    ("Quem fundou a cidade de Salvador?", ["Tomé de Sousa"]),
                    ("Às margens de que baía a cidade foi fundada?", ["baía de Todos os Santos"]),
                    ("Qual produto movimentava o comércio do porto colonial?", ["açúcar"]),
                ],
            ),
            (
                P("""O Centro Histórico de Salvador, conhecido como Pelourinho, reúne
                igrejas, sobrados e praças construídos principalmente nos séculos XVII e
                XVIII. Em 1985, o conjunto foi declarado Patrimônio Mundial pela UNESCO. A
                cidade é dividida em Cidade Alta e Cidade Baixa, separadas por uma escarpa
                de cerca de setenta metros. Para ligar as duas partes, foi inaugurado em
                1873 o Elevador Lacerda, que se tornou um dos cartões-postais da capital
                baiana e transporta milhares de pessoas todos os dias."""),
                [
                    ("Por qual nome é conhecido o Centro Histórico de Salvador?", ["Pelourinho"]),
                    ("Em que ano o centro histórico foi declarado Patrimônio Mundial?", ["1985"]),
                    ("Em quais duas partes a cidade se divide?", ["Cidade Alta e Cidade Baixa"]),
                    ("Que construção liga as duas partes da cidade?", ["Elevador Lacerda"]),
                    ("Quando o elevador foi inaugurado?", ["1873"]),
                ],
            ),
            (
                P("""A cultura afro-brasileira é muito presente em Salvador. A capoeira,
                que combina luta, dança e música, é praticada em rodas ao som do berimbau.
                O acarajé, bolinho de feijão-fradinho frito no azeite de dendê, é vendido
                por baianas em tabuleiros nas ruas. O Carnaval da cidade, animado por trios
                elétricos, reúne multidões de foliões todos os anos. O trio elétrico surgiu
                em 1950, quando Dodô e Osmar desfilaram tocando guitarras elétricas sobre um
                carro antigo."""),
                [
                    ("Que instrumento acompanha as rodas de capoeira?", ["berimbau"]),
                    ("Com que tipo de feijão se faz o acarajé?", ["feijão-fradinho"]),
                    ("Em que óleo o acarajé é frito?", ["azeite de dendê"]),
                    ("Em que ano surgiu o trio elétrico?", ["1950"]),
                    ("Quem desfilou no primeiro trio elétrico?", ["Dodô e Osmar"]),
                ],
            ),
        ],
    },
    {
        "title": "Lisboa",
        "paragraphs": [
            (
                P("""Lisboa é a capital e a maior cidade de Portugal. Situa-se na margem
                norte do estuário do rio Tejo, perto do ponto onde ele encontra o oceano
                Atlântico. A cidade é construída sobre colinas, e por isso muitos bairros
                têm ruas íngremes, escadarias e mirantes com vista para o rio. Entre os
                bairros mais antigos estão Alfama, que conserva um traçado de ruelas
                estreitas e tortuosas, e a Baixa, reconstruída depois do terremoto de 1755.
                Os bondes amarelos, chamados em Portugal de elétricos, como os da linha 28,
                são um símbolo da cidade."""),
                [
                    ("Em que rio fica Lisboa?", ["rio Tejo"]),
                    ("Em que margem do estuário a cidade está situada?", ["margem norte"]),
                    ("Qual bairro lisboeta conserva ruelas estreitas e tortuosas?", ["Alfama"]),
                    ("Qual bairro foi reconstruído depois do terremoto?", ["Baixa"]),
                    ("Como os bondes são chamados em Portugal?", ["elétricos"]),
                ],
            ),
            (
                P("""Em 1º de novembro de 1755, Lisboa foi atingida por um terremoto de
                grande intensidade, seguido por um tsunami e por incêndios que duraram
                vários dias. Milhares de pessoas morreram e grande parte da cidade foi
                destruída. A reconstrução foi comandada pelo Marquês de Pombal, ministro do
                rei D. José I. O novo plano da Baixa adotou ruas retas e largas e edifícios
                com uma estrutura interna de madeira, chamada gaiola pombalina, pensada para
                resistir a futuros tremores. O desastre também influenciou filósofos
                europeus, como Voltaire."""),
                [
                    ("Em que data Lisboa foi atingida pelo grande terremoto?", ["1º de novembro de 1755"]),
                    ("Quem comandou a reconstrução da cidade?", ["Marquês de Pombal"]),
                    ("De qual rei o Marquês de Pombal era ministro?", ["D. José I"]),
                    ("Como se chama a estrutura de madeira dos novos edifícios?", ["gaiola pombalina"]),
                    ("Que filósofo europeu foi influenciado pela catástrofe?", ["Voltaire"]),
                ],
            ),
            (
                P("""Às margens do Tejo, no bairro de Belém, ficam dois dos monumentos
                mais visitados de Portugal: o Mosteiro dos Jerónimos e a Torre de Belém.
                Ambos foram construídos no início do século XVI no estilo manuelino, que usa
                motivos marítimos como cordas, conchas e esferas armilares. O mosteiro
                guarda o túmulo do navegador Vasco da Gama, que chegou à Índia por mar em
                1498. Não muito longe dali, a Ponte 25 de Abril atravessa o rio, e seu nome
                lembra a revolução de 1974."""),
                [
                    ("Em que estilo arquitetônico foram construídos os dois monumentos?", ["estilo manuelino"]),
                    ("Que navegador está sepultado no mosteiro?", ["Vasco da Gama"]),
                    ("Em que ano Vasco da Gama chegou à Índia?", ["1498"]),
                    ("Qual ponte atravessa o Tejo perto de Belém?", ["Ponte 25 de Abril"]),
                    ("Que revolução o nome da ponte recorda?", ["revolução de 1974"]),
                ],
            ),
        ],
    },
    {
        "title": "Independência do Brasil",
        "paragraphs": [
            (
                P("""Em 1808, a família real portuguesa transferiu-se para o Brasil,
                fugindo das tropas de Napoleão Bonaparte que invadiam Portugal. O príncipe
                regente D. João instalou a corte no Rio de Janeiro, que passou a ser o
                centro do império português. No início daquele ano, ele decretou a abertura
                dos portos às nações amigas, medida que beneficiou sobretudo o comércio com
                a Inglaterra. Na mesma época foram criados o Banco do Brasil, a Imprensa
                Régia e o Jardim Botânico."""),
                [
                    ("Em que ano a família real portuguesa veio para o Brasil?", ["1808"]),
                    ("De quem a família real estava fugindo?", ["Napoleão Bonaparte"]),
                    ("Em que cidade D. João instalou a corte?", ["Rio de Janeiro"]),
                    ("Qual país foi o mais beneficiado pela abertura dos portos?", ["Inglaterra"]),
                    ("Que banco foi criado nessa época?", ["Banco do Brasil"]),
                ],
            ),
            (
                P("""Em 1821, D. João VI voltou a Portugal, pressionado pela Revolução
                Liberal do Porto, e deixou no Brasil seu filho Pedro como príncipe regente.
                As Cortes de Lisboa exigiram também o retorno de Pedro, mas ele decidiu
                permanecer, episódio lembrado como Dia do Fico, em 9 de janeiro de 1822. Nos
                meses seguintes, as tensões aumentaram, e em 7 de setembro de 1822, às
                margens do riacho Ipiranga, em São Paulo, Pedro proclamou a independência do
                Brasil. Em dezembro do mesmo ano, foi coroado imperador com o nome de
                D. Pedro I."""),
                [
                    ("Em que ano D. João VI retornou a Portugal?", ["1821"]),
                    ("Como ficou conhecido o dia em que Pedro decidiu permanecer no Brasil?", ["Dia do Fico"]),
                    ("Às margens de que riacho foi proclamada a independência?", ["riacho Ipiranga"]),
                    ("Em que data a independência foi proclamada?", ["7 de setembro de 1822"]),
                    ("Com que nome Pedro foi coroado imperador?", ["D. Pedro I"]),
                ],
            ),
            (
                P("""A independência não foi aceita imediatamente em todas as províncias.
                Na Bahia, tropas leais a Portugal resistiram por vários meses, e os combates
                só terminaram em 2 de julho de 1823, data até hoje comemorada como feriado
                estadual. Houve também conflitos no Pará, no Maranhão e na Cisplatina.
                Portugal reconheceu a independência brasileira em 1825, por meio de um
                tratado mediado pela Inglaterra, no qual o Brasil concordou em pagar uma
                indenização de dois milhões de libras esterlinas."""),
                [
                    ("Em que província as tropas portuguesas resistiram até 1823?", ["Bahia"]),
                    ("Quando terminaram os combates na Bahia?", ["2 de julho de 1823"]),
                    ("Em que ano Portugal reconheceu a independência do Brasil?", ["1825"]),
                    ("Que país atuou como mediador do tratado?", ["Inglaterra"]),
                    ("Qual foi o valor da indenização paga pelo Brasil?", ["dois milhões de libras esterlinas"]),
                ],
            ),
        ],
    },
    {
        "title": "Júpiter",
        "paragraphs": [
            (
                P("""Júpiter é o quinto planeta a partir do Sol e o maior do Sistema
                Solar. Sua massa é mais de duas vezes maior que a soma das massas de todos
                os outros planetas. Formado principalmente por hidrogênio e hélio, é
                classificado como um gigante gasoso e não possui uma superfície sólida
                visível. Um dia em Júpiter dura menos de dez horas, o menor período de
                rotação entre os planetas, enquanto uma volta completa ao redor do Sol leva
                cerca de doze anos terrestres."""),
                [
                    ("Que posição Júpiter ocupa em relação ao Sol?", ["quinto planeta"]),
                    ("De que elementos Júpiter é formado principalmente?", ["hidrogênio e hélio"]),
                    ("Como Júpiter é classificado?", ["gigante gasoso"]),
                    ("Quanto tempo dura um dia em Júpiter?", ["menos de dez horas"]),
                    ("Quanto tempo Júpiter leva para completar uma órbita ao redor do Sol?", ["cerca de doze anos terrestres"]),
                ],
            ),
            (
                P("""A característica mais famosa de Júpiter é a Grande Mancha Vermelha,
                uma tempestade gigantesca maior que a Terra, observada continuamente desde
                o século XIX. A atmosfera do planeta apresenta faixas claras e escuras
                paralelas ao equador, formadas por nuvens de amônia e outros compostos.
                Júpiter também tem o campo magnético mais intenso entre os planetas e um
                sistema de anéis finos e escuros, descoberto pela sonda Voyager 1 em 1979.
                Esses anéis são muito mais discretos que os de Saturno."""),
                [
                    ("Qual é a tempestade mais famosa de Júpiter?", ["Grande Mancha Vermelha"]),
                    ("De que substância são formadas as nuvens das faixas de Júpiter?", ["amônia"]),
                    ("Que sonda descobriu os anéis de Júpiter?", ["Voyager 1"]),
                    ("Em que ano os anéis foram descobertos?", ["1979"]),
                    ("Os anéis de Júpiter são mais discretos que os de qual planeta?", ["Saturno"]),
                ],
            ),
            (
                P("""Júpiter possui dezenas de luas conhecidas. As quatro maiores foram
                descobertas por Galileu Galilei em 1610 e são chamadas de luas galileanas. Ganimedes é a maior lua do Sistema Solar,
                com diâmetro superior ao do planeta Mercúrio. Io é o corpo com maior
                atividade vulcânica conhecida, Calisto tem uma superfície coberta de
                crateras, e Europa desperta o interesse dos
                cientistas porque provavelmente tem um oceano de água líquida sob sua
                crosta de gelo."""),
                [
                    ("Quem descobriu as quatro maiores luas de Júpiter?", ["Galileu Galilei"]),
                    ("Em que ano as luas galileanas foram descobertas?", ["1610"]),
                    ("Qual é a maior lua do Sistema Solar?", ["Ganimedes"]),
                    ("O diâmetro de Ganimedes supera o de qual planeta?", ["Mercúrio"]),
                    ("O que Europa provavelmente tem sob a crosta de gelo?", ["um oceano de água líquida"]),
                ],
            ),
        ],
    },
    {
        "title": "Fotossíntese",
        "paragraphs": [
            (
                P("""A fotossíntese é o processo pelo qual plantas, algas e algumas
                bactérias transformam energia luminosa em energia química. Nesse processo,
                os organismos absorvem gás carbônico do ar e água do solo e, com a energia
                da luz, produzem glicose e liberam oxigênio. Nas plantas, a fotossíntese
                ocorre principalmente nas folhas, dentro de organelas chamadas
                cloroplastos. Essas organelas contêm clorofila, um pigmento verde que
                absorve sobretudo a luz azul e a vermelha."""),
                [
                    ("Em que tipo de energia a energia luminosa é transformada?", ["energia química"]),
                    ("Que gás é liberado na fotossíntese?", ["oxigênio"]),
                    ("Que açúcar é produzido durante o processo?", ["glicose"]),
                    ("Em que parte da planta ocorre principalmente a fotossíntese?", ["folhas"]),
                    ("Qual pigmento verde fica dentro dos cloroplastos?", ["clorofila"]),
                ],
            ),
            (
                P("""A fotossíntese é dividida em duas etapas. Na fase clara, que depende
                diretamente da luz, a molécula de água é quebrada, o oxigênio é liberado e
                a energia é armazenada em moléculas de ATP e NADPH. Na fase escura, também
                chamada de ciclo de Calvin, essa energia é usada para fixar o carbono do gás
                carbônico e formar açúcares. A enzima responsável pela fixação do carbono, a
                rubisco, é considerada a proteína mais abundante da Terra."""),
                [
                    ("Em quantas etapas se divide a fotossíntese?", ["duas etapas"]),
                    ("Que molécula é quebrada na fase clara?", ["água"]),
                    ("Em que moléculas a energia fica armazenada na fase clara?", ["ATP e NADPH"]),
                    ("Qual é o outro nome da fase escura?", ["ciclo de Calvin"]),
                    ("Qual enzima é responsável pela fixação do carbono?", ["rubisco"]),
                ],
            ),
            (
                P("""A fotossíntese é essencial para a vida no planeta. Ela é a base da
                maior parte das cadeias alimentares, pois os organismos fotossintetizantes
                são produtores de matéria orgânica. Além disso, foi responsável pelo
                acúmulo de oxigênio na atmosfera terrestre, processo iniciado há cerca de
                2,4 bilhões de anos por cianobactérias nos oceanos. Hoje, estima-se que o
                fitoplâncton marinho produza aproximadamente metade do oxigênio gerado no
                mundo, uma quantidade comparável à de todas as florestas somadas."""),
                [
                    ("Que papel os organismos fotossintetizantes têm nas cadeias alimentares?", ["produtores de matéria orgânica"]),
                    ("Há quanto tempo começou o acúmulo de oxigênio na atmosfera?", ["cerca de 2,4 bilhões de anos"]),
                    ("Quais organismos iniciaram o acúmulo de oxigênio?", ["cianobactérias"]),
                    ("Que parte do oxigênio do mundo vem do fitoplâncton marinho?", ["aproximadamente metade"]),
                ],
            ),
        ],
    },
    {
        "title": "Bossa nova",
        "paragraphs": [
            (
                P("""A bossa nova é um estilo musical surgido no Rio de Janeiro no fim da
                década de 1950. Ela combina elementos do samba com harmonias inspiradas no
                jazz norte-americano e um modo de cantar suave, quase falado. O marco
                inicial do movimento é considerado o disco Chega de Saudade, lançado por
                João Gilberto em 1959, cuja faixa-título havia sido composta por Tom Jobim e
                Vinicius de Moraes. A batida de violão criada pelo cantor baiano tornou-se a
                assinatura do gênero."""),
                [
                    ("Em que cidade surgiu a bossa nova?", ["Rio de Janeiro"]),
                    ("Em qual gênero norte-americano se inspiram as harmonias da bossa nova?", ["jazz"]),
                    ("Qual disco é considerado o marco inicial da bossa nova?", ["Chega de Saudade"]),
                    ("Em que ano esse disco foi lançado?", ["1959"]),
                    ("Quem compôs a faixa-título do disco?", ["Tom Jobim e Vinicius de Moraes"]),
                ],
            ),
            (
                P("""Entre as canções mais conhecidas da bossa nova está Garota de
                Ipanema, composta em 1962 por Tom Jobim e Vinicius de Moraes. A música foi
                inspirada em uma jovem que passava diariamente perto de um bar do bairro de
                Ipanema, a caminho da praia. A gravação em inglês, com a voz de Astrud
                Gilberto e o saxofone de Stan Getz, fez enorme sucesso nos Estados Unidos e
                ganhou o Grammy de gravação do ano em 1965. É considerada uma das canções
                mais regravadas da história."""),
                [
                    ("Em que ano Garota de Ipanema foi composta?", ["1962"]),
                    ("Quem cantou a versão em inglês da canção?", ["Astrud Gilberto"]),
                    ("Que instrumento Stan Getz tocou na gravação?", ["saxofone"]),
                    ("Que prêmio a gravação recebeu em 1965?", ["Grammy de gravação do ano"]),
                ],
            ),
            (
                P("""Na década de 1960, a bossa nova ganhou projeção internacional. Um
                concerto realizado em 1962 no Carnegie Hall, em Nova York, reuniu vários
                músicos brasileiros e ajudou a divulgar o estilo no exterior. Artistas como
                Frank Sinatra gravaram discos com Tom Jobim, e o gênero influenciou o jazz e
                a música popular de vários países. No Brasil, a bossa nova abriu caminho
                para a Música Popular Brasileira, a MPB, e para artistas como Caetano
                Veloso e Chico Buarque."""),
                [
                    ("Em que sala de concertos os músicos brasileiros se apresentaram em 1962?", ["Carnegie Hall"]),
                    ("Em que cidade fica o Carnegie Hall?", ["Nova York"]),
                    ("Que cantor norte-americano gravou discos com Tom Jobim?", ["Frank Sinatra"]),
                    ("Para qual movimento musical a bossa nova abriu caminho no Brasil?", ["Música Popular Brasileira"]),
                ],
            ),
        ],
    },
    {
        "title": "Futebol no Brasil",
        "paragraphs": [
            (
                P("""O futebol chegou ao Brasil no fim do século XIX. Charles Miller,
                filho de pai escocês e nascido em São Paulo, estudou na Inglaterra e
                retornou em 1894 trazendo bolas e um livro de regras. No início, o esporte
                era praticado sobretudo por clubes da elite, mas aos poucos se popularizou
                entre operários e moradores dos subúrbios. Na década de 1930, o futebol
                tornou-se profissional no país, e a seleção brasileira já disputava a Copa
                do Mundo desde a primeira edição."""),
                [
                    ("Quem trouxe as primeiras bolas e regras de futebol ao Brasil?", ["Charles Miller"]),
                    ("Em que ano Charles Miller voltou ao Brasil?", ["1894"]),
                    ("Em que país Charles Miller estudou?", ["Inglaterra"]),
                    ("Qual era a origem do pai de Charles Miller?", ["escocês"]),
                    ("Em que década o futebol se tornou profissional no Brasil?", ["década de 1930"]),
                ],
            ),
            (
                P("""A seleção brasileira é a maior vencedora da Copa do Mundo, com cinco
                títulos, conquistados em 1958, 1962, 1970, 1994 e 2002. O primeiro veio na
                Suécia, com destaque para um jovem de dezessete anos chamado Pelé, que
                marcou dois gols na final. No México, a equipe conquistou o tricampeonato e
                recebeu em definitivo a taça Jules Rimet. Esse troféu foi roubado em 1983,
                no Rio de Janeiro, e nunca foi recuperado."""),
                [
                    ("Quantos títulos mundiais tem a seleção brasileira?", ["cinco títulos"]),
                    ("Em que país o Brasil ganhou sua primeira Copa do Mundo?", ["Suécia"]),
                    ("Qual era a idade de Pelé na primeira conquista?", ["dezessete anos"]),
                    ("Que troféu o Brasil recebeu em definitivo?", ["taça Jules Rimet"]),
                    ("Em que ano o troféu foi roubado?", ["1983"]),
                ],
            ),
            (
                P("""O Maracanã, no Rio de Janeiro, é o estádio mais famoso do país. Foi
                inaugurado em 1950 para a Copa do Mundo realizada no Brasil, e na partida
                decisiva daquele torneio cerca de duzentas mil pessoas viram o Uruguai
                vencer a seleção brasileira por 2 a 1, derrota que ficou conhecida como
                Maracanaço. O estádio passou por várias reformas e recebeu também a final
                da Copa de 2014 e as cerimônias de abertura e de encerramento dos Jogos
                Olímpicos de 2016."""),
                [
                    ("Em que ano o Maracanã foi inaugurado?", ["1950"]),
                    ("Qual seleção derrotou o Brasil na partida decisiva de 1950?", ["Uruguai"]),
                    ("Qual foi o placar dessa partida?", ["2 a 1"]),
                    ("Como ficou conhecida essa derrota brasileira?", ["Maracanaço"]),
                    ("Quantos torcedores assistiram à partida?", ["cerca de duzentas mil pessoas"]),
                ],
            ),
        ],
    },
    {
        "title": "Machado de Assis",
        "paragraphs": [
            (
                P("""Joaquim Maria Machado de Assis nasceu em 1839, no Morro do
                Livramento, no Rio de Janeiro, e morreu na mesma cidade em 1908. Filho de um
                pintor de paredes e neto de escravizados libertos, teve pouca educação
                formal e aprendeu por conta própria línguas e literatura. Trabalhou como
                tipógrafo, revisor e jornalista antes de ingressar no serviço público. É
                considerado por muitos críticos o maior escritor da literatura
                brasileira."""),
                [
                    ("Em que ano nasceu Machado de Assis?", ["1839"]),
                    ("Em que morro do Rio de Janeiro ele nasceu?", ["Morro do Livramento"]),
                    ("Qual era a profissão do pai de Machado de Assis?", ["pintor de paredes"]),
                    ("Em que ano Machado de Assis morreu?", ["1908"]),
                    ("Em que funções trabalhou antes de entrar no serviço público?", ["tipógrafo, revisor e jornalista"]),
                ],
            ),
            (
                P("""A obra de Machado de Assis costuma ser dividida em duas fases. A
                segunda começa com Memórias Póstumas de Brás Cubas, publicado em livro em
                1881, romance narrado por um defunto que conta a própria vida com ironia.
                Também pertencem a essa fase Quincas Borba e Dom Casmurro. Neste último, o
                narrador Bento Santiago, apelidado de Bentinho, suspeita que sua esposa,
                Capitu, o traiu com seu melhor amigo, Escobar, dúvida que o livro nunca
                resolve."""),
                [
                    ("Qual romance inaugura a segunda fase de Machado de Assis?", ["Memórias Póstumas de Brás Cubas"]),
                    ("Em que ano esse romance foi publicado em livro?", ["1881"]),
                    ("Quem é o narrador de Memórias Póstumas de Brás Cubas?", ["um defunto"]),
                    ("Qual é o nome da esposa de Bentinho?", ["Capitu"]),
                    ("Com quem Bentinho suspeita ter sido traído?", ["Escobar"]),
                ],
            ),
            (
                P("""Além de romances, Machado escreveu contos, crônicas, poemas e peças
                de teatro. Entre as suas narrativas curtas mais lidas estão O Alienista,
                sobre um médico que interna quase toda a população de uma cidade, e A
                Cartomante. Em 1897, ele esteve entre os fundadores da Academia Brasileira
                de Letras e tornou-se seu primeiro presidente, cargo que ocupou até morrer.
                Por isso, a instituição é conhecida também como Casa de Machado de
                Assis."""),
                [
                    ("Qual narrativa trata de um médico que interna quase toda uma cidade?", ["O Alienista"]),
                    ("Em que ano foi fundada a Academia Brasileira de Letras?", ["1897"]),
                    ("Que cargo Machado ocupou na Academia?", ["primeiro presidente"]),
                    ("Por qual outro nome a Academia é conhecida?", ["Casa de Machado de Assis"]),
                ],
            ),
        ],
    },
    {
        "title": "Luís de Camões",
        "paragraphs": [
            (
                P("""Luís Vaz de Camões é o mais célebre poeta da língua portuguesa.
                Nasceu por volta de 1524, provavelmente em Lisboa, e teve uma vida marcada
                por aventuras e dificuldades. Serviu como soldado no norte da África, onde
                perdeu um olho em combate, e depois passou muitos anos no Oriente, em
                lugares como Goa e Macau. Segundo a tradição, sobreviveu a um naufrágio no
                delta do rio Mekong nadando com o manuscrito de sua obra principal."""),
                [
                    ("Por volta de que ano nasceu Camões?", ["1524"]),
                    ("O que Camões perdeu em combate?", ["um olho"]),
                    ("Em que região Camões serviu como soldado?", ["norte da África"]),
                    ("No delta de que rio ocorreu o naufrágio?", ["rio Mekong"]),
                    ("O que Camões salvou ao nadar durante o naufrágio?", ["o manuscrito de sua obra principal"]),
                ],
            ),
            (
                P("""A obra principal de Camões é Os Lusíadas, poema épico publicado em
                1572. Dividido em dez cantos e escrito em oitava rima, o poema narra a
                viagem de Vasco da Gama às Índias e, ao mesmo tempo, exalta a história de
                Portugal. Entre os episódios mais conhecidos estão o do Gigante Adamastor,
                que personifica o cabo das Tormentas, e o de Inês de Castro. Camões também
                escreveu sonetos líricos muito admirados sobre o amor e a passagem do
                tempo."""),
                [
                    ("Qual é a obra principal de Camões?", ["Os Lusíadas"]),
                    ("Em que ano Os Lusíadas foi publicado?", ["1572"]),
                    ("Em quantos cantos se divide o poema?", ["dez cantos"]),
                    ("Que viagem é narrada no poema?", ["viagem de Vasco da Gama às Índias"]),
                    ("Que personagem personifica o cabo das Tormentas?", ["Gigante Adamastor"]),
                ],
            ),
            (
                P("""Camões morreu em Lisboa em 10 de junho de 1580, pobre e quase
                esquecido. Essa data é hoje o Dia de Portugal, de Camões e das Comunidades
                Portuguesas, o feriado nacional português. Em sua homenagem, foi criado em
                1988 o Prêmio Camões, concedido anualmente pelos governos de Portugal e do
                Brasil a um autor de língua portuguesa pelo conjunto da obra. Entre os
                brasileiros premiados estão Jorge Amado, Rachel de Queiroz e Chico
                Buarque."""),
                [
                    ("Em que data morreu Camões?", ["10 de junho de 1580"]),
                    ("Que feriado português é celebrado no dia da morte de Camões?", ["Dia de Portugal"]),
                    ("Em que ano foi criado o Prêmio Camões?", ["1988"]),
                    ("Com que frequência o Prêmio Camões é concedido?", ["anualmente"]),
                    ("Que escritora brasileira recebeu o Prêmio Camões?", ["Rachel de Queiroz"]),
                ],
            ),
        ],
    },
    {
        "title": "Internet",
        "paragraphs": [
            (
                P("""A internet é uma rede mundial que interliga milhões de redes de
                computadores. Sua origem está na ARPANET, projeto do Departamento de Defesa
                dos Estados Unidos que realizou a primeira conexão entre computadores
                distantes em 1969. Na década de 1970, Vinton Cerf e Robert Kahn
                desenvolveram os protocolos TCP/IP, que permitem a comunicação entre redes
                diferentes e continuam sendo a base da internet. Essa rede pioneira adotou
                oficialmente os novos protocolos em 1º de janeiro de 1983."""),
                [
                    ("Qual projeto deu origem à internet?", ["ARPANET"]),
                    ("Que órgão norte-americano criou esse projeto?", ["Departamento de Defesa dos Estados Unidos"]),
                    ("Em que ano foi feita a primeira conexão entre computadores distantes?", ["1969"]),
                    ("Quem desenvolveu os protocolos TCP/IP?", ["Vinton Cerf e Robert Kahn"]),
                    ("Quando a rede pioneira adotou oficialmente o TCP/IP?", ["1º de janeiro de 1983"]),
                ],
            ),
            (
                P("""A World Wide Web, ou simplesmente web, foi criada pelo cientista
                britânico Tim Berners-Lee em 1989, enquanto trabalhava no CERN, laboratório
                de física de partículas perto de Genebra, na Suíça. Ele propôs um sistema de
                documentos ligados por hiperlinks e desenvolveu a linguagem HTML, o
                protocolo HTTP e o primeiro navegador. Em 1993, o laboratório colocou a
                tecnologia da web em domínio público, o que contribuiu para sua rápida
                expansão pelo mundo."""),
                [
                    ("Quem criou a World Wide Web?", ["Tim Berners-Lee"]),
                    ("Em que ano a web foi criada?", ["1989"]),
                    ("Perto de que cidade fica o CERN?", ["Genebra"]),
                    ("Que linguagem de marcação foi desenvolvida por Berners-Lee?", ["HTML"]),
                    ("Em que ano a tecnologia da web passou ao domínio público?", ["1993"]),
                ],
            ),
            (
                P("""No Brasil, as primeiras conexões à internet foram feitas no fim da
                década de 1980 por universidades e centros de pesquisa. Em 1989 foi criada
                a Rede Nacional de Ensino e Pesquisa, conhecida como RNP, para interligar
                instituições acadêmicas de todo o país. O acesso comercial só foi liberado
                em 1995, ano em que surgiram os primeiros provedores privados. Hoje o Brasil
                está entre os países com mais usuários de internet, e a maior parte dos
                acessos é feita pelo telefone celular."""),
                [
                    ("Quem fez as primeiras conexões à internet no Brasil?", ["universidades e centros de pesquisa"]),
                    ("Qual é a sigla da Rede Nacional de Ensino e Pesquisa?", ["RNP"]),
                    ("Em que ano o acesso comercial à internet foi liberado no Brasil?", ["1995"]),
                    ("Por meio de qual aparelho é feita a maior parte dos acessos hoje?", ["telefone celular"]),
                ],
            ),
        ],
    },
    {
        "title": "Feijoada",
        "paragraphs": [
            (
                P("""A feijoada é um dos pratos mais tradicionais da culinária
                brasileira. Trata-se de um cozido de feijão-preto com carnes de porco e de
                boi, como linguiça, costela, lombo e carne-seca. No Rio de Janeiro e em
                outras cidades, é costume servi-la às quartas-feiras e aos sábados, em
                almoços demorados entre amigos e familiares. Os acompanhamentos mais comuns
                são arroz branco, couve refogada, farofa, torresmo e fatias de laranja, que
                ajudam a equilibrar o sabor gorduroso do prato."""),
                [
                    ("Que tipo de feijão é usado na feijoada?", ["feijão-preto"]),
                    ("Em que dias da semana é costume servir feijoada no Rio de Janeiro?", ["quartas-feiras e aos sábados"]),
                    ("Qual fruta costuma acompanhar a feijoada?", ["laranja"]),
                    ("Que verdura refogada é servida com o prato?", ["couve"]),
                ],
            ),
            (
                P("""A origem da feijoada é tema de debate. Uma versão popular afirma que
                o prato teria sido criado por pessoas escravizadas a partir das partes do
                porco rejeitadas pelos senhores, como orelhas e pés. Historiadores, porém,
                apontam que cozidos de feijão com carnes já existiam na Europa, como o
                cozido português e a cassoulet francesa. Para eles, a feijoada brasileira
                resultou da adaptação dessas receitas aos ingredientes locais e
                popularizou-se no século XIX em restaurantes e casas de família."""),
                [
                    ("Que partes do porco são mencionadas na versão popular sobre a origem do prato?", ["orelhas e pés"]),
                    ("Qual prato francês é citado como parecido com a feijoada?", ["cassoulet"]),
                    ("Em que século a feijoada se popularizou?", ["século XIX"]),
                    ("Quem defende que a feijoada foi adaptada de receitas europeias?", ["Historiadores"]),
                ],
            ),
        ],
    },
    {
        "title": "Pantanal",
        "paragraphs": [
            (
                P("""O Pantanal é uma das maiores planícies alagáveis do mundo.
                Localiza-se no centro da América do Sul, principalmente nos estados
                brasileiros de Mato Grosso e Mato Grosso do Sul, mas estende-se também pela
                Bolívia e pelo Paraguai. A região é drenada pelo rio Paraguai e seus
                afluentes. Durante a estação chuvosa, entre novembro e março, os rios
                transbordam e cobrem grande parte da planície; na estação seca, as águas
                recuam e formam lagoas e campos de pastagem."""),
                [
                    ("Em quais estados brasileiros fica a maior parte do Pantanal?", ["Mato Grosso e Mato Grosso do Sul"]),
                    ("Que rio drena a região do Pantanal?", ["rio Paraguai"]),
                    ("Em que meses acontece a estação chuvosa?", ["entre novembro e março"]),
                    ("O que surge quando as águas recuam na estação seca?", ["lagoas e campos de pastagem"]),
                ],
            ),
            (
                P("""A fauna do Pantanal é uma das mais ricas e fáceis de observar do
                continente. A região abriga grandes populações de jacarés, capivaras e aves
                aquáticas, como o tuiuiú, ave de pescoço negro e faixa vermelha escolhida
                como símbolo do Pantanal. Também vivem ali a onça-pintada, a ariranha, o
                cervo-do-pantanal e a arara-azul-grande, que já esteve ameaçada de
                extinção. Em 2000, parte da região foi reconhecida pela UNESCO como
                Patrimônio Natural da Humanidade."""),
                [
                    ("Qual ave foi escolhida como símbolo do Pantanal?", ["tuiuiú"]),
                    ("Qual grande felino vive no Pantanal?", ["onça-pintada"]),
                    ("Que ave do Pantanal já esteve ameaçada de extinção?", ["arara-azul-grande"]),
                    ("Em que ano parte do Pantanal foi reconhecida pela UNESCO?", ["2000"]),
                ],
            ),
            (
                P("""A pecuária é a principal atividade econômica tradicional do
                Pantanal. Há mais de dois séculos, fazendas criam gado nas pastagens
                naturais, e o trabalho é feito pelos peões pantaneiros, que conduzem as
                boiadas a cavalo por longas distâncias. Nas últimas décadas, o turismo de
                observação da natureza e a pesca esportiva ganharam importância. Entre as
                ameaças ao bioma estão os incêndios, que em 2020 atingiram cerca de um
                quarto da área do Pantanal, e o desmatamento nas cabeceiras dos rios."""),
                [
                    ("Qual é a principal atividade econômica tradicional do Pantanal?", ["pecuária"]),
                    ("Como são chamados os trabalhadores que conduzem as boiadas?", ["peões pantaneiros"]),
                    ("Que tipo de pesca ganhou importância nas últimas décadas?", ["pesca esportiva"]),
                    ("Em que ano grandes incêndios atingiram o Pantanal?", ["2020"]),
                    ("Que parte da área do Pantanal foi atingida pelos incêndios?", ["cerca de um quarto"]),
                ],
            ),
        ],
    },
    {
        "title": "Célula",
        "paragraphs": [
            (
                P("""A célula é a menor unidade estrutural e funcional dos seres vivos.
                Em 1665, o cientista inglês Robert Hooke observou finas fatias de cortiça em
                um microscópio e chamou de células os pequenos compartimentos que viu. No
                século XIX, os alemães Matthias Schleiden e Theodor Schwann propuseram a
                teoria celular, segundo a qual todos os seres vivos são formados por
                células. Mais tarde, Rudolf Virchow acrescentou que toda célula se origina
                de outra célula preexistente."""),
                [
                    ("Que cientista inglês deu nome às células?", ["Robert Hooke"]),
                    ("Em que ano Hooke fez sua observação?", ["1665"]),
                    ("Que material Hooke observou no microscópio?", ["cortiça"]),
                    ("Quem propôs a teoria celular?", ["Matthias Schleiden e Theodor Schwann"]),
                    ("Quem afirmou que toda célula vem de outra célula?", ["Rudolf Virchow"]),
                ],
            ),
            (
                P("""As células são classificadas em dois grandes tipos. As
                procarióticas, encontradas em bactérias e arqueias, não têm núcleo
                delimitado por membrana, e seu material genético fica disperso no
                citoplasma. As eucarióticas, presentes em animais, plantas, fungos e
                protozoários, possuem núcleo e diversas organelas, como mitocôndrias,
                retículo endoplasmático e complexo de Golgi. As células vegetais têm ainda
                parede celular de celulose e cloroplastos, estruturas que não existem nas
                células animais."""),
                [
                    ("Em que organismos são encontradas as células procarióticas?", ["bactérias e arqueias"]),
                    ("Onde fica o material genético das células procarióticas?", ["disperso no citoplasma"]),
                    ("De que substância é feita a parede das células vegetais?", ["celulose"]),
                    ("Em quais organismos estão presentes as células eucarióticas?", ["animais, plantas, fungos e protozoários"]),
                ],
            ),
            (
                P("""As mitocôndrias são responsáveis pela respiração celular, processo
                que utiliza oxigênio para extrair energia da glicose e armazená-la na forma
                de ATP. Por isso, são frequentemente chamadas de usinas de energia da
                célula. Elas possuem DNA próprio, diferente do material genético do núcleo,
                e em muitas espécies são herdadas apenas da mãe. A teoria da endossimbiose,
                defendida pela bióloga Lynn Margulis, propõe que as mitocôndrias descendem
                de bactérias que passaram a viver dentro de outras células há mais de um
                bilhão de anos."""),
                [
                    ("Por qual processo as mitocôndrias são responsáveis?", ["respiração celular"]),
                    ("Como as mitocôndrias são frequentemente chamadas?", ["usinas de energia da célula"]),
                    ("De qual dos pais as mitocôndrias são herdadas em muitas espécies?", ["mãe"]),
                    ("Que bióloga defendeu a teoria da endossimbiose?", ["Lynn Margulis"]),
                    ("De que organismos as mitocôndrias descenderiam?", ["bactérias"]),
                ],
            ),
        ],
    },
    {
        "title": "Brasília",
        "paragraphs": [
            (
                P("""Brasília é a capital federal do Brasil desde 21 de abril de 1960,
                quando foi inaugurada pelo presidente Juscelino Kubitschek. A transferência
                da capital para o interior já estava prevista na primeira Constituição
                republicana, de 1891, mas só foi realizada como parte do plano de metas do
                governo, cujo lema era fazer cinquenta anos em cinco. A cidade foi
                construída em pouco mais de três anos, no Planalto Central, por dezenas de
                milhares de trabalhadores vindos de várias regiões, chamados de
                candangos."""),
                [
                    ("Em que data Brasília foi inaugurada?", ["21 de abril de 1960"]),
                    ("Qual presidente inaugurou Brasília?", ["Juscelino Kubitschek"]),
                    ("De que ano é a Constituição que já previa a mudança da capital?", ["1891"]),
                    ("Qual era o lema do plano de metas?", ["cinquenta anos em cinco"]),
                    ("Como eram chamados os trabalhadores que construíram a cidade?", ["candangos"]),
                ],
            ),
            (
                P("""O projeto urbanístico de Brasília, conhecido como Plano Piloto, foi
                elaborado por Lucio Costa, vencedor de um concurso nacional realizado em
                1957. Visto de cima, o traçado lembra um avião ou um pássaro de asas
                abertas. No eixo principal, chamado Eixo Monumental, ficam os edifícios do
                governo; nas asas Sul e Norte estão as superquadras residenciais. Os
                principais prédios públicos foram projetados pelo arquiteto Oscar Niemeyer,
                conhecido pelas formas curvas de concreto armado."""),
                [
                    ("Como é conhecido o projeto urbanístico de Brasília?", ["Plano Piloto"]),
                    ("Quem elaborou o projeto urbanístico da cidade?", ["Lucio Costa"]),
                    ("Em que ano foi realizado o concurso?", ["1957"]),
                    ("Como se chama o eixo onde ficam os edifícios do governo?", ["Eixo Monumental"]),
                    ("Que arquiteto projetou os principais prédios públicos?", ["Oscar Niemeyer"]),
                ],
            ),
            (
                P("""Entre as obras mais conhecidas de Niemeyer em Brasília estão o
                Congresso Nacional, com suas duas cúpulas, uma voltada para cima e outra
                para baixo, e a Catedral Metropolitana, formada por dezesseis colunas curvas
                de concreto. A Praça dos Três Poderes reúne as sedes do Executivo, do
                Legislativo e do Judiciário. Em 1987, Brasília foi declarada Patrimônio
                Mundial pela UNESCO, sendo o primeiro conjunto urbano construído no século
                XX a receber esse título."""),
                [
                    ("Qual edifício tem duas cúpulas?", ["Congresso Nacional"]),
                    ("Quantas colunas formam a Catedral Metropolitana?", ["dezesseis"]),
                    ("Que praça reúne as sedes dos três poderes?", ["Praça dos Três Poderes"]),
                    ("Em que ano Brasília foi declarada Patrimônio Mundial?", ["1987"]),
                ],
            ),
        ],
    },
]

# In VALIDATION about a third of the questions list 2-3 gold answers.

VALIDATION_ARTICLES = [
    {
        "title": "Rio São Francisco",
        "paragraphs": [
            (
                P("""O rio São Francisco nasce na serra da Canastra, em Minas Gerais, e
                percorre cerca de 2.800 quilômetros até desaguar no oceano Atlântico, na
                divisa entre Alagoas e Sergipe. Atravessa também os estados da Bahia e de
                Pernambuco, levando água a extensas áreas do semiárido nordestino. Por unir
                regiões tão diferentes, é chamado de rio da integração nacional. A
                população ribeirinha costuma chamá-lo carinhosamente de Velho Chico."""),
                [
                    ("Onde nasce o rio São Francisco?", ["serra da Canastra", "na serra da Canastra"]),
                    ("Qual é a extensão aproximada do rio?", ["cerca de 2.800 quilômetros", "2.800 quilômetros"]),
                    ("Entre quais estados fica a foz do rio?", ["Alagoas e Sergipe"]),
                    ("Por unir regiões diferentes, como o rio é chamado?", ["rio da integração nacional"]),
                    ("Qual é o apelido carinhoso dado ao rio pelos ribeirinhos?", ["Velho Chico"]),
                ],
            ),
            (
                P("""Ao longo do São Francisco foram construídas várias usinas
                hidrelétricas, como Paulo Afonso, Xingó e a de Sobradinho, que produzem
                grande parte da energia consumida no Nordeste. A represa dessa última usina,
                situada na Bahia, forma um dos maiores lagos artificiais do mundo em
                superfície. Desde 2007, o governo federal executa o projeto de transposição
                do rio, que desvia parte de suas águas por canais para abastecer regiões
                secas do Ceará, da Paraíba, de Pernambuco e do Rio Grande do Norte."""),
                [
                    ("Que região consome grande parte da energia gerada no rio?", ["Nordeste"]),
                    ("Em que estado fica a represa de Sobradinho?", ["Bahia", "na Bahia"]),
                    ("Desde que ano o projeto de transposição é executado?", ["2007"]),
                    ("Por onde as águas desviadas pela transposição são conduzidas?", ["canais"]),
                    ("O que a represa de Sobradinho forma?", ["um dos maiores lagos artificiais do mundo"]),
                ],
            ),
            (
                P("""Europeus navegaram pela foz do rio pela primeira vez em 1501, quando
                uma expedição portuguesa a alcançou no dia 4 de outubro, dedicado a São
                Francisco de Assis, o que explica o nome. Durante o período colonial, suas
                margens foram ocupadas por fazendas de gado, e o rio serviu de caminho entre
                o litoral e o interior. Por muitas décadas, barcos a vapor chamados gaiolas
                transportaram passageiros e mercadorias entre Pirapora, em Minas Gerais, e
                Juazeiro, na Bahia."""),
                [
                    ("Em que ano europeus chegaram à foz do rio?", ["1501", "em 1501"]),
                    ("Em homenagem a qual santo o rio recebeu seu nome?", ["São Francisco de Assis"]),
                    ("Em que dia a expedição portuguesa chegou à foz?", ["4 de outubro", "dia 4 de outubro"]),
                    ("Como eram chamados os barcos a vapor do rio?", ["gaiolas"]),
                    ("Que atividade ocupou as margens do rio no período colonial?", ["fazendas de gado"]),
                ],
            ),
        ],
    },
    {
        "title": "Cidade do Porto",
        "paragraphs": [
            (
                P("""O Porto é a segunda maior cidade de Portugal e fica no norte do
                país, na margem direita do rio Douro, perto de sua foz no oceano Atlântico.
                Na Antiguidade, a região tinha um povoado chamado Portus Cale, nome que deu
                origem à palavra Portugal. O centro histórico, com casas coloridas que
                descem em direção ao rio, foi declarado Patrimônio Mundial pela UNESCO em
                1996. Os habitantes da cidade são chamados de portuenses."""),
                [
                    ("À margem de que rio fica a cidade do Porto?", ["rio Douro"]),
                    ("Que povoado antigo deu origem ao nome de Portugal?", ["Portus Cale"]),
                    ("Em que ano o centro histórico foi declarado Patrimônio Mundial?", ["1996"]),
                    ("Como são chamados os habitantes do Porto?", ["portuenses"]),
                    ("Em que margem do rio a cidade se localiza?", ["margem direita"]),
                ],
            ),
            (
                P("""O vinho do Porto é um vinho licoroso produzido com uvas cultivadas
                no vale do Douro, região vinícola demarcada em 1756 por ordem do Marquês de
                Pombal. Durante a fermentação, acrescenta-se aguardente vínica, que
                interrompe o processo e deixa o vinho doce e com teor alcoólico mais
                elevado. Tradicionalmente, o vinho descia o rio em barcos rabelos até as
                caves de Vila Nova de Gaia, cidade situada na margem oposta, onde
                envelhecia em barris de madeira."""),
                [
                    ("Em que ano a região do Douro foi demarcada?", ["1756", "em 1756"]),
                    ("Por ordem de quem a região foi demarcada?", ["Marquês de Pombal"]),
                    ("O que se acrescenta ao vinho durante a fermentação?", ["aguardente vínica", "aguardente"]),
                    ("Como se chamavam os barcos que levavam o vinho pelo rio?", ["barcos rabelos"]),
                    ("Em que cidade ficam as caves onde o vinho envelhecia?", ["Vila Nova de Gaia"]),
                ],
            ),
            (
                P("""Entre os símbolos do Porto estão a Ponte Dom Luís I, estrutura de
                ferro com dois tabuleiros inaugurada em 1886, e a Torre dos Clérigos,
                campanário barroco do século XVIII projetado pelo arquiteto italiano
                Nicolau Nasoni. A cidade também é conhecida pela francesinha, sanduíche
                recheado com carnes, coberto de queijo derretido e servido com um molho à
                base de tomate e cerveja. No futebol, o Futebol Clube do Porto, fundado em
                1893, é um dos clubes mais vitoriosos do país."""),
                [
                    ("Em que ano foi inaugurada a Ponte Dom Luís I?", ["1886"]),
                    ("Quem projetou a Torre dos Clérigos?", ["Nicolau Nasoni", "arquiteto italiano Nicolau Nasoni"]),
                    ("Qual sanduíche é típico da cidade?", ["francesinha"]),
                    ("Em que ano foi fundado o Futebol Clube do Porto?", ["1893"]),
                    ("De que material é feita a Ponte Dom Luís I?", ["ferro", "estrutura de ferro"]),
                ],
            ),
        ],
    },
    {
        "title": "Lua",
        "paragraphs": [
            (
                P("""A Lua é o único satélite natural da Terra e o quinto maior do
                Sistema Solar. Ela está, em média, a cerca de 384 mil quilômetros do nosso
                planeta e tem diâmetro de aproximadamente 3.474 quilômetros, pouco mais de
                um quarto do diâmetro terrestre. A Lua leva cerca de 27 dias para completar
                uma volta ao redor da Terra e o mesmo tempo para girar em torno de si mesma.
                Por isso, mostra sempre a mesma face para quem a observa daqui."""),
                [
                    ("Qual é a distância média entre a Terra e a Lua?", ["cerca de 384 mil quilômetros", "384 mil quilômetros"]),
                    ("Qual é o diâmetro da Lua?", ["aproximadamente 3.474 quilômetros", "3.474 quilômetros"]),
                    ("Quanto tempo a Lua leva para dar uma volta em torno da Terra?", ["cerca de 27 dias"]),
                    ("Que posição a Lua ocupa em tamanho entre os satélites do Sistema Solar?", ["quinto maior"]),
                ],
            ),
            (
                P("""A hipótese mais aceita para a origem da Lua é a do grande impacto.
                Segundo ela, há cerca de 4,5 bilhões de anos, um corpo do tamanho de Marte,
                chamado Theia, colidiu com a Terra primitiva. Os detritos lançados ao
                espaço pela colisão se juntaram e formaram a Lua. A superfície lunar é
                coberta por crateras produzidas por impactos de meteoritos e por planícies
                escuras de lava solidificada, chamadas mares, que podem ser vistas a olho
                nu."""),
                [
                    ("Qual é a hipótese mais aceita para a origem da Lua?", ["grande impacto", "a do grande impacto"]),
                    ("Qual era o nome do corpo que colidiu com a Terra?", ["Theia"]),
                    ("Qual era o tamanho aproximado desse corpo?", ["do tamanho de Marte"]),
                    ("Há quanto tempo ocorreu a colisão?", ["cerca de 4,5 bilhões de anos", "4,5 bilhões de anos"]),
                    ("Como são chamadas as planícies escuras de lava na superfície lunar?", ["mares"]),
                ],
            ),
            (
                P("""Em 20 de julho de 1969, a missão Apollo 11, da agência espacial
                norte-americana NASA, levou os primeiros seres humanos à superfície da Lua.
                O astronauta Neil Armstrong foi o primeiro a pisar no solo lunar, seguido
                por Buzz Aldrin, enquanto Michael Collins permanecia em órbita no módulo de
                comando. Até 1972, doze astronautas caminharam na Lua em seis missões
                diferentes e trouxeram para a Terra centenas de quilos de rochas e poeira
                lunar."""),
                [
                    ("Em que data os primeiros seres humanos pousaram na Lua?", ["20 de julho de 1969", "Em 20 de julho de 1969"]),
                    ("Qual missão levou os primeiros seres humanos à Lua?", ["Apollo 11"]),
                    ("Quem foi o primeiro astronauta a pisar na Lua?", ["Neil Armstrong", "Armstrong"]),
                    ("Qual astronauta permaneceu em órbita?", ["Michael Collins"]),
                    ("Quantos astronautas caminharam na Lua até 1972?", ["doze astronautas"]),
                ],
            ),
        ],
    },
    {
        "title": "Santos Dumont",
        "paragraphs": [
            (
                P("""Alberto Santos Dumont nasceu em 20 de julho de 1873, em uma fazenda
                na região de Palmira, atual município de Santos Dumont, em Minas Gerais.
                Filho de um engenheiro que enriqueceu com o cultivo de café, mudou-se ainda
                jovem para Paris, onde estudou física, química e mecânica. Na capital
                francesa, dedicou-se primeiro aos balões e depois aos dirigíveis, aeronaves
                mais leves que o ar equipadas com motor e leme, que podiam ser conduzidas
                pelo piloto."""),
                [
                    ("Em que data nasceu Santos Dumont?", ["20 de julho de 1873"]),
                    ("Como se chamava a região onde ele nasceu?", ["Palmira", "região de Palmira"]),
                    ("Com que cultivo o pai de Santos Dumont enriqueceu?", ["café"]),
                    ("Para que cidade ele se mudou ainda jovem?", ["Paris"]),
                    ("A que aeronaves ele se dedicou depois dos balões?", ["dirigíveis"]),
                ],
            ),
            (
                P("""Em 1901, Santos Dumont conquistou o Prêmio Deutsch ao contornar a
                Torre Eiffel com o dirigível número 6 e voltar ao ponto de partida em menos
                de trinta minutos. Cinco anos depois, em 23 de outubro de 1906, ele voou com
                o 14-Bis no campo de Bagatelle, em Paris, diante de uma multidão e de uma
                comissão oficial. O voo, de cerca de sessenta metros, é considerado por
                muitos o primeiro de um avião que decolou por meios próprios, sem rampa ou
                catapulta."""),
                [
                    ("Que prêmio Santos Dumont ganhou em 1901?", ["Prêmio Deutsch"]),
                    ("Que monumento ele contornou com o dirigível?", ["Torre Eiffel"]),
                    ("Com qual aeronave voou em 1906?", ["14-Bis", "o 14-Bis"]),
                    ("Em que campo de Paris aconteceu o voo de 1906?", ["campo de Bagatelle", "Bagatelle"]),
                    ("Qual foi a distância percorrida nesse voo?", ["cerca de sessenta metros"]),
                ],
            ),
            (
                P("""Santos Dumont também criou o Demoiselle, um pequeno monoplano leve
                que foi produzido em série e é considerado um dos precursores dos aviões
                esportivos. Ele não patenteou muitas de suas invenções, pois desejava que
                fossem usadas livremente. É citado ainda como um dos responsáveis pela
                popularização do relógio de pulso masculino, feito a seu pedido pelo
                joalheiro Louis Cartier. Morreu em 1932, no Guarujá, em São Paulo, e é
                reconhecido oficialmente como Patrono da Aeronáutica Brasileira."""),
                [
                    ("Qual pequeno monoplano ele criou?", ["Demoiselle"]),
                    ("Que joalheiro fez o relógio de pulso a pedido de Santos Dumont?", ["Louis Cartier"]),
                    ("Em que ano Santos Dumont morreu?", ["1932"]),
                    ("Em que cidade ele morreu?", ["Guarujá", "no Guarujá"]),
                    ("De que instituição Santos Dumont é patrono?", ["Aeronáutica Brasileira"]),
                ],
            ),
        ],
    },
    {
        "title": "Café no Brasil",
        "paragraphs": [
            (
                P("""O café chegou ao Brasil em 1727, trazido da Guiana Francesa para
                Belém pelo sargento-mor Francisco de Melo Palheta. Do Norte, a planta se
                espalhou para o Maranhão, a Bahia e, na segunda metade do século XVIII,
                para o Rio de Janeiro. No século XIX, as lavouras avançaram pelo vale do
                rio Paraíba do Sul e depois pelo oeste paulista, onde encontraram a terra
                roxa, um solo avermelhado e muito fértil, ideal para o cultivo."""),
                [
                    ("Em que ano o café chegou ao Brasil?", ["1727"]),
                    ("Quem trouxe o café para o Brasil?", ["Francisco de Melo Palheta", "sargento-mor Francisco de Melo Palheta"]),
                    ("De onde o café foi trazido?", ["Guiana Francesa"]),
                    ("Por qual vale as lavouras avançaram no século XIX?", ["vale do rio Paraíba do Sul"]),
                    ("Como se chama o solo fértil do oeste paulista?", ["terra roxa"]),
                ],
            ),
            (
                P("""Durante grande parte do século XIX e do início do século XX, o café
                foi o principal produto de exportação do Brasil. A riqueza gerada pelas
                fazendas financiou ferrovias, como a que ligava o interior paulista ao
                porto de Santos, e impulsionou o crescimento da cidade de São Paulo. Após a
                abolição da escravidão, em 1888, milhares de imigrantes europeus,
                principalmente italianos, vieram trabalhar nos cafezais. A crise de 1929
                derrubou os preços internacionais e enfraqueceu o poder político dos
                cafeicultores."""),
                [
                    ("A que porto a ferrovia ligava o interior paulista?", ["porto de Santos"]),
                    ("Em que ano foi abolida a escravidão no Brasil?", ["1888"]),
                    ("Qual era a principal nacionalidade dos imigrantes que trabalharam nos cafezais?", ["italianos", "principalmente italianos"]),
                    ("Que crise derrubou os preços internacionais do café?", ["crise de 1929", "1929"]),
                    ("O que foi financiado pela riqueza das fazendas?", ["ferrovias"]),
                ],
            ),
            (
                P("""Hoje o Brasil é o maior produtor e exportador de café do mundo,
                posição que ocupa há mais de um século. Minas Gerais é o estado com a maior
                produção, seguido pelo Espírito Santo, onde predomina o café conilon, da espécie
                canéfora. As duas espécies mais cultivadas no país são
                o arábica, de sabor mais suave, e o canéfora, mais resistente e com mais
                cafeína. O cafezinho, servido em xícaras pequenas, faz parte da
                hospitalidade brasileira."""),
                [
                    ("Qual estado brasileiro tem a maior produção de café?", ["Minas Gerais"]),
                    ("Que tipo de café predomina no Espírito Santo?", ["café conilon", "conilon"]),
                    ("Qual espécie de café tem sabor mais suave?", ["arábica"]),
                    ("Há quanto tempo o Brasil é o maior produtor de café?", ["há mais de um século", "mais de um século"]),
                    ("Em que é servido o cafezinho?", ["xícaras pequenas", "em xícaras pequenas"]),
                ],
            ),
        ],
    },
]


def build_split(articles, split, multi_gold_allowed):
    data = []
    n = 0
    for art in articles:
        paragraphs = []
        for context, qas in art["paragraphs"]:
            words = len(context.split())
            assert 60 <= words <= 130, (art["title"], words)
            assert 4 <= len(qas) <= 5, (art["title"], len(qas))
            out_qas = []
            for question, answers in qas:
                assert answers and (multi_gold_allowed or len(answers) == 1), question
                assert len(answers) <= 3, question
                golds = []
                for text in answers:
                    count = context.count(text)
                    assert count == 1, f"{text!r} occurs {count}x in context of {art['title']!r}"
                    start = context.index(text)
                    assert context[start:start + len(text)] == text
                    golds.append({"text": text, "answer_start": start})
                n += 1
                out_qas.append({
                    "id": f"pt-smoke-{split}-{n:04d}",
                    "question": question,
                    "answers": golds,
                })
            paragraphs.append({"context": context, "qas": out_qas})
        data.append({"title": art["title"], "paragraphs": paragraphs})
    return {"version": "v1.1", "data": data}


def write(obj, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=1))
        f.write("\n")


def main():
    train_titles = {a["title"] for a in TRAIN_ARTICLES}
    val_titles = {a["title"] for a in VALIDATION_ARTICLES}
    assert not train_titles & val_titles
    write(build_split(TRAIN_ARTICLES, "train", False), os.path.join(HERE, "train.json"))
    write(build_split(VALIDATION_ARTICLES, "val", True), os.path.join(HERE, "validation.json"))


if __name__ == "__main__":
    main()
