"""SSN3D Studio, the Streamlit app: ``streamlit run app/main.py`` (pages in ``app/pages``)."""
